"""The import graph of the tree, parsed (not imported): every import statement of every module of
ours, wherever it sits (module level, in a function, under `if TYPE_CHECKING:`).

(a) The layer rule (tests/ and notebooks are exempt):
    model/ (the core)   -> nothing of ours but the core (tests/model/test_purity.py: nor model.results)
    model/results/      -> model
    sim/                -> model
    realsys/            -> model, dtq (the generated protobuf package)
    lab/                -> anything
(b) No import cycle between modules, function-level imports counted.
(c) No import inside a function without a comment on its line saying why (an optional dependency,
    a heavy import kept off a start-up path).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"model": ROOT / "model", "sim": ROOT / "sim", "realsys": ROOT / "realsys", "lab": ROOT / "lab"}
PROTO = ROOT / "proto"  # the generated package dtq lives in proto/dtq
# layer -> the layers it may import (its own included)
ALLOWED = {
    "model": {"model"},
    "model.results": {"model", "model.results"},
    "sim": {"sim", "model", "model.results"},
    "realsys": {"realsys", "model", "model.results", "dtq"},
    "lab": {"lab", "sim", "realsys", "model", "model.results", "dtq"},
    "dtq": {"dtq"},
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the module of ours it imports
    line: int
    in_function: bool
    commented: bool


def module_name(path: Path) -> str:
    rel = path.relative_to(PROTO if path.is_relative_to(PROTO) else ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.parts[-1] == "__init__" else rel.parts
    return ".".join(parts)


def source_files() -> list[Path]:
    files = [p for d in PACKAGES.values() for p in d.rglob("*.py")]
    files += [p for p in (PROTO / "dtq").rglob("*.py")]
    return sorted(p for p in files if "__pycache__" not in p.parts)


MODULES = {module_name(p): p for p in source_files()}


def layer(module: str) -> str:
    if module == "model.results" or module.startswith("model.results."):
        return "model.results"
    return module.split(".", 1)[0]


def resolve(name: str) -> str | None:
    """The longest prefix of `name` that is a module of ours (`a.b.c` where c is a function -> a.b)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in MODULES:
            return candidate
    return None


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def imports_of(module: str, path: Path) -> Iterator[Import]:
    text = path.read_text()
    lines = text.splitlines()
    tree = ast.parse(text, filename=str(path))
    parents = _parents(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        up, in_function = parents.get(node), False
        while up is not None:
            in_function = in_function or isinstance(up, ast.FunctionDef | ast.AsyncFunctionDef)
            up = parents.get(up)
        commented = any("#" in lines[i] for i in range(node.lineno - 1, node.end_lineno or node.lineno))
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" if base else alias.name for alias in node.names]
        for target in {t for t in map(resolve, names) if t is not None and t != module}:
            yield Import(module, target, node.lineno, in_function, commented)


GRAPH = [imp for module, path in MODULES.items() for imp in imports_of(module, path)]


def test_the_tree_is_found() -> None:
    assert {"model.jobs", "model.results.runs", "sim.api", "realsys.cli", "lab.cli", "dtq.v1.job_pb2"} <= set(
        MODULES
    )
    assert len(GRAPH) > 300


def layer_violations() -> list[str]:
    return [
        f"{MODULES[i.module].relative_to(ROOT)}:{i.line} ({layer(i.module)}) imports {i.target}"
        for i in GRAPH
        if layer(i.target) not in ALLOWED[layer(i.module)]
    ]


def test_layers() -> None:
    assert layer_violations() == []


def cycles(edges: list[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _package_edge(i: Import) -> bool:
    """`import sim` from sim/api.py would loop through sim/__init__.py; an import of a module by its
    own package's __init__ is the package's, not a cycle."""
    return i.module.startswith(i.target + ".") or i.target.startswith(i.module + ".")


def test_no_import_cycles() -> None:
    edges = [(i.module, i.target) for i in GRAPH if not _package_edge(i)]
    assert cycles(edges) == []


def uncommented_function_imports() -> list[str]:
    seen: set[tuple[str, int]] = set()
    out = []
    for path in [*source_files(), *sorted((ROOT / "tests").rglob("*.py"))]:
        tree = ast.parse(path.read_text())
        lines = path.read_text().splitlines()
        parents = _parents(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            up, in_function = parents.get(node), False
            while up is not None and not in_function:
                in_function = isinstance(up, ast.FunctionDef | ast.AsyncFunctionDef)
                up = parents.get(up)
            span = range(node.lineno - 1, node.end_lineno or node.lineno)
            if (
                in_function
                and not any("#" in lines[i] for i in span)
                and (str(path), node.lineno) not in seen
            ):
                seen.add((str(path), node.lineno))
                out.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return out


def test_imports_inside_functions_say_why() -> None:
    assert uncommented_function_imports() == []


# ---------------------------------------------------------------------------- the checks themselves
def test_cycles_are_found() -> None:
    assert cycles([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]) == [["a", "b", "c"]]
    assert cycles([("a", "b"), ("b", "c"), ("a", "c")]) == []


@pytest.mark.parametrize(
    ("module", "target", "ok"),
    [
        ("model.jobs", "model.states", True),
        ("model.jobs", "model.results.stats", False),
        ("model.results.runs", "model.workload", True),
        ("model.results.runs", "sim.params", False),
        ("sim.api", "model.results.summary", True),
        ("sim.api", "realsys.loadgen", False),
        ("realsys.cli", "dtq.v1.job_pb2", True),
        ("realsys.loadgen", "sim.params", False),
        ("realsys.cli", "lab.cli", False),
        ("lab.cli", "realsys.cli", True),
        ("lab.validation.twins", "sim.api", True),
    ],
)
def test_the_layer_rule(module: str, target: str, ok: bool) -> None:
    assert (layer(target) in ALLOWED[layer(module)]) is ok


def test_resolve_and_relative_imports(tmp_path: Path) -> None:
    assert resolve("model.results.summary.summarize") == "model.results.summary"
    assert resolve("sim") == "sim" and resolve("numpy.random") is None
    found = list(imports_of("sim.api", PACKAGES["sim"] / "api.py"))
    assert any(i.target == "sim.engine" for i in found)
    source = tmp_path / "x.py"
    source.write_text("from .engine import Cluster\ndef f():\n    from ..model import jobs  # why\n")
    relative = list(imports_of("sim.x", source))
    assert {(i.target, i.in_function, i.commented) for i in relative} == {
        ("sim.engine", False, False),
        ("model.jobs", True, True),
    }
