"""Examples of what users add to dtq: `jobs.py` is a job module for DTQ_JOB_MODULES."""
