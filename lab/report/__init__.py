"""The paper: paper/paper.md and its appendix filled from paper/template.md, every figure and table,
all rebuilt from data/ (`make paper`, `python -m lab.report`; build.py), and the re-runs that
re-measure into a fresh root (rerun.py)."""
