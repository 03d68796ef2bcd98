"""realsys.cluster: free_ports (ports a server can bind a moment later) and the plan of N Design B nodes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from model.ids import owner_of
from model.states import JobState
from realsys import cluster
from realsys.client import DtqClient
from realsys.config import load_config


def test_free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    ports = cluster.free_ports(8)
    assert len(set(ports)) == 8
    low, _ = cluster._ephemeral_range()
    if low - cluster.LOWEST_PICKED_PORT >= 1000:  # room below the range (Linux's default 32768)
        assert all(cluster.LOWEST_PICKED_PORT <= p < low for p in ports), (ports, low)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))  # released again, free to bind


def test_without_room_below_the_range_the_kernel_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "_ephemeral_range", lambda: (cluster.LOWEST_PICKED_PORT + 10, 65535))
    ports = cluster.free_ports(3)
    assert len(set(ports)) == 3 and all(p > 0 for p in ports)


@pytest.mark.parametrize("nodes", [1, 3, 12])
def test_plan_names_n_nodes_that_split_the_slots_and_know_each_other(tmp_path: Path, nodes: int) -> None:
    planned = cluster.plan("mono", tmp_path, 12, "sqlite", nodes=nodes)
    names = [name for name, _, _ in planned]
    assert names == [f"n{i}" for i in range(1, nodes + 1)]
    for name, role, env in planned:
        config = load_config(env)  # what the node itself will load
        assert (role, config.name) == ("node", name)
        assert config.slots == 12 // nodes  # total slots equal across designs
        assert list(config.peers) == names


@pytest.mark.parametrize(
    ("nodes", "slots", "message"),
    [
        (0, 12, "needs 1 to 100 nodes, not 0"),
        (101, 101, "needs 1 to 100 nodes, not 101"),
        (5, 12, "12 does not divide (give a total slot count that is a multiple of 5)"),
    ],
)
def test_bad_node_counts_fail_before_anything_starts(
    tmp_path: Path, nodes: int, slots: int, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        cluster.up("mono", tmp_path / "c", slots, nodes=nodes)
    assert not (tmp_path / "c").exists()


def test_cli_refuses_bad_node_counts_in_one_line(tmp_path: Path) -> None:
    for args, message in (
        (["--design", "mono", "--nodes", "101"], "dtq cluster up: Design B needs 1 to 100 nodes, not 101"),
        (
            ["--design", "mono", "--nodes", "0"],
            "dtq cluster up: error: argument --nodes: expected an integer >= 1",
        ),
        (["--design", "micro", "--nodes", "3"], "dtq cluster up: --nodes is for Design B (--design mono)"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "realsys", "cluster", "up", "--dir", str(tmp_path / "c"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2
        assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr


@pytest.mark.slow
async def test_a_three_node_cluster_serves_and_lists_across_its_nodes(tmp_path: Path) -> None:
    """`--nodes 3`: cluster.json lists three nodes of four slots each; jobs submitted through every
    node run and finish, and one node's listing gathers the jobs every owner holds."""
    info = await asyncio.to_thread(cluster.up, "mono", tmp_path / "c", 12, "sqlite", nodes=3, timeout=60)
    try:
        recorded = json.loads((tmp_path / "c" / cluster.CLUSTER_FILE).read_text())
        assert [n["name"] for n in recorded["nodes"]] == ["n1", "n2", "n3"]
        assert [n["env"]["DTQ_SLOTS"] for n in recorded["nodes"]] == ["4", "4", "4"]
        for node in recorded["nodes"]:  # out of the terminal's process group, in our session (one
            pid = node["pid"]  # scheduling group with the caller where autogroup is on)
            assert os.getpgid(pid) == pid != os.getpgid(0)
            assert os.getsid(pid) == os.getsid(0)
        ids = []
        for address in info.clients:  # each node in turn owns what it accepted
            async with DtqClient([address], timeout=10.0) as client:
                ids += [await client.submit("echo", b"x") for _ in range(3)]
        assert {owner_of(i) for i in ids} == {"n1", "n2", "n3"}
        async with DtqClient(info.clients[:1], timeout=10.0) as client:
            done = [await client.wait(i, timeout=20.0) for i in ids]
            listed = {j.job_id async for j in client.list_all(page_size=4)}
        assert all(JobState(j.state) is JobState.SUCCEEDED for j in done)
        assert set(ids) <= listed
    finally:
        await asyncio.to_thread(cluster.down, tmp_path / "c", 5.0)
