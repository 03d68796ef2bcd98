"""SimPy discrete-event simulator of both dtq designs, driven by the shared core (model/).

`sim.run(SimConfig(...)) -> SimResult`: records in the same schema as the real load generator (and
as DataFrames), and the data/README.md summary (kind "sim"); see sim/api.py. `sim.sweep(base, grid)`:
many runs, one tidy DataFrame with confidence intervals, here, on a process pool or a Dask cluster;
see sim/sweeps.py. What an override key means: sim/keys.py.
"""

from sim.api import PlaceholderWarning, SimConfig, SimResult, run
from sim.dist import Dist
from sim.injection import Fault
from sim.params import SimParams, load_params
from sim.sweeps import local_cluster, sweep

__all__ = [
    "Dist",
    "Fault",
    "PlaceholderWarning",
    "SimConfig",
    "SimParams",
    "SimResult",
    "load_params",
    "local_cluster",
    "run",
    "sweep",
]
