"""The research harness, above the product and the simulator (it may import model/, sim/ and
realsys/; nothing imports it): experiments, validation, calibration and the host probe, the
benchmarks, fault injection, the soak, diagnostics, the Celery baseline and the paper's report.
See lab/README.md."""
