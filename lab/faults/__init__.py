"""`dtq faults run`: one fault injected under load into a real cluster (local processes or Compose
containers), then an audit of what was lost, duplicated and unavailable (cli.py says how)."""
