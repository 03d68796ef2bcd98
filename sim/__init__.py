"""SimPy discrete-event simulator of both dtq designs, driven by the shared core (model/).

`sim.run(SimConfig(...)) -> SimResult`: records in the same schema as the real load generator, and the
data/README.md summary (kind "sim"). See sim/api.py.
"""

from sim.api import SimConfig, SimResult, run
from sim.dist import Dist
from sim.injection import Fault
from sim.params import SimParams, load_params

__all__ = ["Dist", "Fault", "SimConfig", "SimParams", "SimResult", "load_params", "run"]
