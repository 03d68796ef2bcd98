"""realsys.cluster.free_ports: ports a server can bind a moment later."""

from __future__ import annotations

import socket

import pytest

from realsys import cluster


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
