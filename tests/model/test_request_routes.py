"""model.ids.request_homes and route_submit: where Design B's idempotent submits go."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from model.ids import request_homes, route_submit

NODES = [f"n{i}" for i in range(1, 7)]


@given(st.text(max_size=40), st.integers(1, 12))
def test_request_homes_are_two_distinct_nodes_the_same_for_any_order(key: str, n: int) -> None:
    nodes = [f"n{i}" for i in range(1, n + 1)]
    primary, fallback = request_homes(key, nodes)
    assert request_homes(key, list(reversed(nodes))) == (primary, fallback)
    assert primary in nodes and fallback in nodes
    assert (primary == fallback) == (n == 1)


def test_a_nodes_keys_fall_back_to_every_other_node() -> None:
    keys = [k for k in (f"k{i}" for i in range(3000)) if request_homes(k, NODES)[0] == "n3"]
    assert len(keys) > 300
    assert {request_homes(k, NODES)[1] for k in keys} == set(NODES) - {"n3"}


@given(
    key=st.text(max_size=20),
    node=st.sampled_from(NODES),
    forwarded=st.booleans(),
    delivered=st.booleans(),
    suspected=st.sets(st.sampled_from(NODES)),
)
def test_every_submit_ends_at_one_of_the_keys_homes(
    key: str, node: str, forwarded: bool, delivered: bool, suspected: set[str]
) -> None:
    route = route_submit(key, node, NODES, forwarded=forwarded, delivered=delivered, suspected=suspected)
    primary, fallback = request_homes(key, NODES)
    assert (route.primary, route.fallback) == (primary, fallback)
    if delivered:
        # only a home takes a hand-over; a mark elsewhere (forged) makes no job there
        assert route.role == ("deliver" if node in (primary, fallback) else "misrouted")
    elif node in (primary, fallback):
        assert route.role == ("primary" if node == primary else "fallback")
    elif forwarded:
        assert route.role == "misrouted"  # a forward goes at most one node further
    else:
        assert route.role == "forward" and set(route.forward_to) == {primary, fallback}
        # a reachable home before a suspected one; the primary first when both are alike
        down = [home in suspected for home in route.forward_to]
        assert down == sorted(down)
        if (primary in suspected) == (fallback in suspected):
            assert route.forward_to[0] == primary
