"""lab.faults.swarm (the Swarm backend of the fault runner) and lab.calibration.netprobe, without a swarm.

docker/swarm-test.sh runs the backend on a real swarm of network-namespace hosts; here: the hosts and
faults it accepts, that it looks for each service where the rendered stack puts it, and the hop probe.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from lab.calibration import netprobe
from lab.faults import swarm
from model.errors import InvalidArgument
from realsys import deploy

HOSTS = "h1=10.78.0.1=unix:///run/h1.sock,h2=10.78.0.2=unix:///run/h2.sock,h3=10.78.0.3=unix:///run/h3.sock"


def test_hosts_parse_and_bad_ones_are_refused() -> None:
    hosts = swarm.parse_hosts(HOSTS)
    assert [h.label for h in hosts] == ["h1", "h2", "h3"]
    assert hosts[1] == swarm.SwarmHost("h2", "10.78.0.2", "unix:///run/h2.sock")
    for bad in ("", "h1=10.78.0.1", "h1=a=b,h1=c=d"):
        with pytest.raises(InvalidArgument, match="--hosts"):
            swarm.parse_hosts(bad)


@pytest.mark.parametrize(("design", "nodes"), [("mono", 6), ("mono", 12), ("micro", 6)])
def test_the_backend_finds_each_service_where_the_stack_puts_it(design: str, nodes: int) -> None:
    hosts = swarm.parse_hosts(HOSTS)
    stack = yaml.safe_load(deploy.Deployment("swarm", design, nodes, len(hosts)).render())
    where = swarm.placement(design, nodes, hosts)
    assert set(where) == set(stack["services"])
    for name, (host, port) in where.items():
        service = stack["services"][name]
        assert service["deploy"]["placement"]["constraints"][-1] == f"node.labels.dtq.host == {host.label}"
        assert [p["published"] for p in service["ports"]] == [port]


def test_faults_name_a_service_or_a_host_other_than_the_manager() -> None:
    hosts = swarm.parse_hosts(HOSTS)
    faults = swarm.plan("mono", "host:h2,kill:n3", 6, hosts, 8.0, 3.0)
    assert [(f.action, f.target, f.at, f.downtime) for f in faults] == [
        ("kill", "host:h2", 8.0, 3.0),
        ("kill", "n3", 8.0, 3.0),
    ]
    for bad in ("host:h1", "kill:n7", "kill:worker", "pause:n1", ""):
        with pytest.raises(InvalidArgument, match="--faults"):
            swarm.plan("mono", bad, 6, hosts, 8.0, 3.0)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="network namespaces need root and iproute2"
)
def test_the_hop_probe_times_both_paths_and_cleans_up() -> None:
    result = netprobe.measure(calls=50, rounds=2)
    measured = result["measurements"]
    assert len(measured["round_medians_us"]["veth"]) == 2
    assert all(x > 0 for x in measured["round_medians_us"]["loopback"] + measured["round_medians_us"]["veth"])
    assert result["parameters"]["host_hop"]["mean"] >= 0.0
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not any(space in spaces for space in netprobe.SPACES)
    links = subprocess.run(["ip", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert netprobe.BRIDGE not in links


@pytest.mark.parametrize("failures", [1, 2])
def test_a_run_that_raised_is_tried_once_more_and_said(
    failures: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A rig failure (here: deploy) is tried once more, with its error line; a second one ends with 1."""
    calls: list[str] = []

    def run(*_args: Any, run_id: str, **_kw: Any) -> SimpleNamespace:
        calls.append(run_id)
        if len(calls) <= failures:
            raise RuntimeError("docker stack deploy exited 1: network not ready\nmore detail")
        return SimpleNamespace(found=SimpleNamespace(lost=0, lost_ids=[]))

    monkeypatch.setattr(swarm, "run_with_flags", run)
    monkeypatch.setattr(swarm, "format_runs", lambda runs: "header\nrow")
    monkeypatch.setattr(swarm, "write_rows", lambda runs, path: path)
    argv = ["--design", "micro", "--image", "dtq:test", "--hosts", HOSTS, "--faults", "kill:worker"]
    code = swarm.main([*argv, "--out", str(tmp_path / "rows.json")])
    out = capsys.readouterr().out
    assert (
        "lab.faults.swarm: micro kill:worker attempt 1 of 2 failed: RuntimeError: docker stack deploy" in out
    )
    assert "more detail" not in out  # one line of the error
    if failures == 1:
        assert code == 0 and len(calls) == 2
    else:
        assert code == 1 and len(calls) == 2 and "attempt 2 of 2 failed" in out
