"""realsys.cluster.running: a local cluster for a block, down afterwards even when the block raises,
its temporary folder gone with it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from realsys import cluster

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


def test_up_for_the_block_then_down_and_removed() -> None:
    with cluster.running("mono", store="memory", prefix="dtq-test-running-") as info:
        pids = [n.pid for n in info.nodes]
        assert len(pids) == 6 and all(_alive(p) for p in pids)
        assert (info.directory / cluster.CLUSTER_FILE).is_file()
        assert info.directory.parent.name.startswith("dtq-test-running-")
        for node in info.nodes:
            cluster.wait_healthy(node.address, 5.0, node.pid)
    assert not any(_alive(p) for p in pids)
    assert not info.directory.parent.exists()


def test_down_when_the_block_raises(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="in the block"),
        cluster.running("micro", tmp_path / "c", store="memory", grace=5) as info,
    ):
        pids = [n.pid for n in info.nodes]
        raise RuntimeError("in the block")
    assert not any(_alive(p) for p in pids)
    assert not (tmp_path / "c" / cluster.CLUSTER_FILE).exists()
    assert (tmp_path / "c").is_dir()  # a folder the caller gave is the caller's: logs stay
