"""Benchmarks: `dtq bench` (the real system against Celery + Redis and a bare gRPC echo, as ratios
measured in the same run), its py-spy profiles, and the simulator's own speed (simulator.py)."""
