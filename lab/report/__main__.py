"""`python -m lab.report` (`make paper`): the paper's figures and tables from data/."""

import sys

from lab.report.build import main

sys.exit(main())
