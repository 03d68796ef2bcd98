"""The paper: every figure and table rebuilt from data/, and REPORT.md's table blocks filled
(`make paper`, `python -m lab.report`; build.py)."""
