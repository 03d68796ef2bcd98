"""lab.faults.swarm (the Swarm backend of the fault runner) and lab.calibration.netprobe, without a swarm.

docker/swarm-test.sh runs the backend on a real swarm of network-namespace hosts; here: the hosts and
faults it accepts, that it looks for each service where the rendered stack puts it, and the hop probe.
"""

from __future__ import annotations

import os
import shutil
import subprocess

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
    stack = yaml.safe_load(deploy.render("swarm", design, nodes, len(hosts)))
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
