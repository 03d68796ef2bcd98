"""`dtq experiment`: sweeps of real runs from an experiment file (spec.py), expanded into runs
(plan.py), run resumably on local clusters (runner.py) and summarised with CIs (summary.py)."""
