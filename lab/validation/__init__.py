"""`dtq validate`: the simulator, fed only the calibration, against the real local cluster. The file
(spec.py), its real runs (plan.py, real.py), their simulated twins (twins.py, twin_sets.py), and the
error table and winner agreement (accuracy.py, output.py)."""
