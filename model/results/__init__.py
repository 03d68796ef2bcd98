"""The shared results layer, above the core (which never imports it): the record schema
(schema.py), run summaries (summary.py), run directories on disk (runs.py) and the statistics of
results (stats.py). The simulator, the load generator and the lab all use it; it may do file I/O and
imports only the core and third-party packages (tests/model/test_purity.py)."""
