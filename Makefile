# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit proto lifecycle clean docker-test swarm-test paper notebooks

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,sim,lab]"
	touch $(STAMP)

# The main job as it stands: both designs as six-process local clusters, end to end.
demo: $(STAMP)
	$(BIN)/dtq demo

test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

# Containers: builds the one image and runs both designs under Docker Compose on a real engine (installs
# and starts the engine when missing, as root); see docker/test.sh and README "Docker".
docker-test: $(STAMP)
	PYTHON=$(abspath $(BIN))/python bash docker/test.sh

# Both designs as Docker Swarm stacks on three hosts made of network namespaces, with faults and an audit
# (as root); see docker/swarm-test.sh and README "Docker Swarm, several hosts".
swarm-test: $(STAMP)
	PYTHON=$(abspath $(BIN))/python bash docker/swarm-test.sh

proto: $(STAMP)
	$(BIN)/python proto/generate.py

lifecycle: $(STAMP)
	$(BIN)/python -m model.states

# The paper (paper/paper.md from paper/template.md, paper/appendix.md), every figure (paper/figures/*.png)
# and table (paper/tables/*.md), from the committed data in data/ (fast; the predicted curves are
# re-simulated only when their inputs changed). RERUN=1 re-measures everything into a fresh root
# rerun/full-<time>/ and builds the paper there (data/ is never touched; each measuring step takes
# /tmp/dtq-measure.lock itself); QUICK=1 does a reduced re-measure into rerun/quick-<time>/ for a smoke
# check. How long each takes: paper/paper.md, "Reproducing" (lab/report/rerun.py estimates it).
paper: $(STAMP)
	$(BIN)/python -m lab.report $(if $(RERUN),--rerun) $(if $(QUICK),--quick)

# Runs every notebook with its full settings and stores it with its outputs and figures (lab/notebooks.py;
# ~15 min here). CI runs them in small mode without storing anything (tests/notebooks).
notebooks: $(STAMP)
	$(BIN)/python -m lab.notebooks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
