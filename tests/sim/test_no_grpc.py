"""The simulator never touches gRPC or protobuf: parsed (every import statement) and imported."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SIM_DIR = Path(__file__).resolve().parents[2] / "sim"
BANNED = ("grpc", "google.protobuf", "dtq", "realsys")


def test_no_banned_imports_in_sim_sources() -> None:
    files = sorted(SIM_DIR.glob("*.py"))
    assert files
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not any(name == b or name.startswith(b + ".") for b in BANNED), f"{path.name}: {name}"


def test_importing_and_running_the_simulator_loads_no_grpc() -> None:
    code = (
        "import sys, sim\n"
        "from model.workload import OpenLoop, WorkloadSpec\n"
        "sim.run(sim.SimConfig('mono', WorkloadSpec(OpenLoop(50.0), run_time=0.5, warmup=0.1)))\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'dtq', 'realsys')"
        " or m.startswith('google.protobuf'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=SIM_DIR.parent)
