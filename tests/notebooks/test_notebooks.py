"""Every notebook in notebooks/ is committed WITH its outputs and figures (made by `make notebooks`,
the full settings), small, and runs top to bottom in small mode (DTQ_NB_SMALL=1) in a fresh kernel:
one that raises fails the build. The CI run executes a copy in memory and never rewrites the
committed outputs."""

from __future__ import annotations

import base64
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
MAX_PNG_BYTES = 200_000  # one figure
MAX_NOTEBOOK_BYTES = 1_500_000  # one notebook with its outputs


def test_the_four_notebooks_exist() -> None:
    names = [p.name for p in PATHS]
    for prefix in ("01_simulate", "02_calibration", "03_validation", "04_paper_figures"):
        assert f"{prefix}.ipynb" in names


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_stored_with_their_figures_and_parameterised(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "the first code cell is the parameters cell"
    assert "DTQ_NB_SMALL" in code[0].source
    assert all(c.get("execution_count") for c in code), "run `make notebooks`: a cell has not been run"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"], "a cell failed when it was stored"
    pngs = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert pngs, "no figure stored: run `make notebooks`"
    assert all(len(base64.b64decode(p)) <= MAX_PNG_BYTES for p in pngs), "a figure is too large (dpi?)"
    assert path.stat().st_size <= MAX_NOTEBOOK_BYTES


@pytest.mark.timeout(240)
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTQ_NB_SMALL", "1")  # the kernel inherits this process's environment
    monkeypatch.setenv("MPLBACKEND", "Agg")
    before = path.read_bytes()
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # run a copy from clean: the stored outputs stay as they are
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert path.read_bytes() == before, "the committed notebook was rewritten"
