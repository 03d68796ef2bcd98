"""The Celery + Redis peer baseline, driven by the same load generator as dtq.

- `celery_app`: the Celery app and tasks mirroring dtq's built-in job types (sleep, cpu, echo, fail).
- `target`: `CeleryTarget`, the load generator's Target for Celery.
- `runner`: `BaselineCluster` (a private redis-server plus Celery worker processes) and a one-run CLI.
"""
