"""`python -m lab.report ARGS` (`make paper`) is `dtq report ARGS`: the paper's figures and tables
from data/."""

import sys

from realsys.cli import main

main(["report", *sys.argv[1:]])
