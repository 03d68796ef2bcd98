"""The peer baselines, driven by the same load generator as dtq.

- `celery_app`: the Celery app and tasks mirroring dtq's built-in job types (sleep, cpu, echo, fail),
  and its settings profiles.
- `target`: `CeleryTarget`, the load generator's Target for Celery.
- `runner`: `BaselineCluster` (a private redis-server plus Celery worker processes) and a one-run CLI.
- `dramatiq_app`, `dramatiq_target`, `dramatiq_runner`: the same three for Dramatiq + Redis
  (`DramatiqCluster` reuses BaselineCluster's redis-server); `echo` and `sleep` only.
"""
