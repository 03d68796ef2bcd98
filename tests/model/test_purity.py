"""The core is sans-I/O, and the results layer sits above it.

- The core (every model/**/*.py outside model/results/) imports no clock, randomness, event loop,
  simulator, RPC, protobuf or OS access, and never the results layer (model.results).
- The results layer (model/results/) may do file I/O, and imports only the core, the standard library
  and third-party packages: nothing of sim, realsys, lab or the generated protobuf package (dtq).

Every file is parsed (not imported) and every import statement checked, wherever it sits (module
level, inside functions, under `if TYPE_CHECKING:`). The one exception is the
`if __name__ == "__main__":` block of model/states.py, which may import pathlib to write the diagram.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

MODEL_DIR = Path(__file__).resolve().parents[2] / "model"
RESULTS_DIR = MODEL_DIR / "results"
MODEL_FILES = sorted(p for p in MODEL_DIR.rglob("*.py") if RESULTS_DIR not in p.parents)
RESULTS_FILES = sorted(RESULTS_DIR.rglob("*.py"))
# what the results layer may not import: every part of ours but the core
RESULTS_BANNED = ("sim", "realsys", "lab", "dtq")

BANNED = (
    "model.results",
    "time",
    "random",
    "asyncio",
    "simpy",
    "grpc",
    "google.protobuf",
    "dtq",
    "threading",
    "socket",
    "os",
    "datetime",
    # also I/O, processes and hidden randomness: the reason states.py's main block needs an exception
    "pathlib",
    "io",
    "subprocess",
    "shutil",
    "tempfile",
    "multiprocessing",
    "concurrent",
    "selectors",
    "signal",
    "uuid",
    "secrets",
)
# imports allowed only inside `if __name__ == "__main__":` of these files
MAIN_BLOCK_ALLOWED = {"states.py": frozenset({"pathlib"})}


def _under(module: str, packages: tuple[str, ...] | frozenset[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def is_banned(module: str) -> bool:
    return _under(module, BANNED)


def _is_main_guard(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def imported_modules(tree: ast.AST, package: str = "model") -> list[tuple[str, int, bool]]:
    """(module, line, inside a top-level main guard) for every import in the tree.

    `from . import x` and `from .x import y` are resolved against `package`, the file's package
    (`..` one package up)."""
    main_guard_nodes: set[int] = set()
    if isinstance(tree, ast.Module):
        for stmt in tree.body:
            if _is_main_guard(stmt):
                main_guard_nodes.update(id(n) for n in ast.walk(stmt))
    found: list[tuple[str, int, bool]] = []
    for node in ast.walk(tree):
        in_main = id(node) in main_guard_nodes
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno, in_main) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                if base:
                    found.append((base, node.lineno, in_main))
                found.extend((f"{base}.{a.name}".lstrip("."), node.lineno, in_main) for a in node.names)
            else:
                assert node.module is not None
                found.append((node.module, node.lineno, in_main))
                # `from google import protobuf` imports google.protobuf
                found.extend((f"{node.module}.{alias.name}", node.lineno, in_main) for alias in node.names)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute):
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            if name in ("__import__", "import_module") and node.args:
                arg = node.args[0]
                module = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else "?"
                found.append((module, node.lineno, in_main))
    return found


def _package(path: Path) -> str:
    """The dotted package a file under model/ belongs to ("model" for a file outside model/)."""
    try:
        rel = path.parent.relative_to(MODEL_DIR.parent)
    except ValueError:
        return "model"
    return ".".join(rel.parts) if rel.parts and rel.parts[0] == "model" else "model"


def violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    allowed_in_main = MAIN_BLOCK_ALLOWED.get(path.name, frozenset())
    bad = []
    for module, line, in_main in imported_modules(tree, _package(path)):
        if in_main and _under(module, allowed_in_main):
            continue
        if in_main or is_banned(module) or module == "?":
            bad.append(
                f"{path.name}:{line} imports {module}" + (" (in the __main__ block)" if in_main else "")
            )
    return bad


def results_violations(path: Path) -> list[str]:
    """Imports of the results layer's file `path` that leave the core, the standard library and
    third-party packages (anything of sim, realsys, lab, dtq)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.name}:{line} imports {module}"
        for module, line, _ in imported_modules(tree, _package(path))
        if _under(module, RESULTS_BANNED)
    ]


def test_model_files_are_found() -> None:
    names = {p.name for p in MODEL_FILES}
    assert {"states.py", "jobs.py", "queue.py", "scheduler.py", "listing.py", "workload.py"} <= names
    assert {"schema.py", "summary.py", "runs.py", "stats.py"} <= {p.name for p in RESULTS_FILES}
    assert not set(MODEL_FILES) & set(RESULTS_FILES)


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: str(p.relative_to(MODEL_DIR)))
def test_core_module_is_pure(path: Path) -> None:
    assert violations(path) == [], "the sans-I/O core must not import these (see model/__init__.py)"


@pytest.mark.parametrize("path", RESULTS_FILES, ids=lambda p: str(p.relative_to(MODEL_DIR)))
def test_results_layer_imports_only_the_core(path: Path) -> None:
    assert results_violations(path) == [], "model/results imports only model (the core) and third-party"


def test_results_layer_does_io() -> None:
    """The results layer is where the file I/O is (so the core can have none): the checker for the
    core would refuse it, the one for the results layer accepts it."""
    runs = RESULTS_DIR / "runs.py"
    assert violations(runs), "runs.py does file I/O: the core's rule must refuse it"
    assert results_violations(runs) == []


def test_states_main_block_imports_only_pathlib() -> None:
    tree = ast.parse((MODEL_DIR / "states.py").read_text())
    in_main = [m for m, _, main in imported_modules(tree) if main]
    assert in_main == ["pathlib", "pathlib.Path"]


# ---------------------------------------------------------------------------- the checker itself
@pytest.mark.parametrize(
    "source",
    [
        "import time",
        "import os.path",
        "from os import path",
        "import datetime as dt",
        "from datetime import datetime",
        "from google.protobuf import message",
        "from google import protobuf",
        "import grpc.aio",
        "from dtq.v1 import job_pb2",
        "import simpy",
        "def f():\n    import random\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import asyncio\n",
        "import importlib\nimportlib.import_module('socket')\n",
        "__import__('threading')",
        "if __name__ == '__main__':\n    import os\n",
        "from model.results.summary import summarize",
        "from model.results import stats",
        "import model.results.runs",
    ],
)
def test_checker_catches(source: str, tmp_path: Path) -> None:
    path = tmp_path / "states.py"
    path.write_text(source)
    assert violations(path), source


@pytest.mark.parametrize(
    "source",
    [
        "import math",
        "import heapq",
        "import timeit",  # starts with a banned name but is another module
        "from model.errors import InvalidArgument",
        "from . import errors",
        "import numpy as np",
        "import osmosis",  # a name that merely starts with a banned one
        "from model import states",
        "if __name__ == '__main__':\n    from pathlib import Path\n",
    ],
)
def test_checker_allows(source: str, tmp_path: Path) -> None:
    path = tmp_path / "states.py"
    path.write_text(source)
    assert violations(path) == [], source


def test_pathlib_is_allowed_only_in_the_states_main_block(tmp_path: Path) -> None:
    (tmp_path / "jobs.py").write_text("if __name__ == '__main__':\n    import pathlib\n")
    (tmp_path / "states.py").write_text("import pathlib\n")
    assert violations(tmp_path / "jobs.py")
    assert violations(tmp_path / "states.py")
    # a nested main guard (not at module level) gets no exception
    (tmp_path / "states.py").write_text("def f():\n    if __name__ == '__main__':\n        import pathlib\n")
    assert violations(tmp_path / "states.py")


@pytest.mark.parametrize(
    "source",
    [
        "from sim.params import SimParams",
        "import realsys.cluster",
        "from lab import report",
        "from dtq.v1 import job_pb2",
        "from ... import sim",
    ],
)
def test_results_checker_catches(source: str) -> None:
    path = RESULTS_DIR / "x.py"
    tree = ast.parse(source)
    found = [m for m, _, _ in imported_modules(tree, _package(path)) if _under(m, RESULTS_BANNED)]
    assert found, source


@pytest.mark.parametrize(
    "source",
    [
        "from model.states import JobState",
        "from model.results.schema import JobRecord",
        "from .schema import JobRecord",
        "from .. import workload",
        "import os, json, gzip",
        "from scipy import stats",
        "import simplejson",  # a name that merely starts with a banned one
    ],
)
def test_results_checker_allows(source: str) -> None:
    path = RESULTS_DIR / "x.py"
    tree = ast.parse(source)
    assert [m for m, _, _ in imported_modules(tree, _package(path)) if _under(m, RESULTS_BANNED)] == []
