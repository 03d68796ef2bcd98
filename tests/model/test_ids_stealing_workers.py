"""Job ids and routing, work stealing decisions, and the worker registry."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.commands import WorkerLost
from model.config import CoreConfig
from model.errors import Code, InvalidArgument, Unavailable
from model.ids import (
    MAX_JOB_ID_CHARS,
    JobIdFactory,
    owner_of,
    parse_job_id,
    route,
    split_by_owner,
    validate_node_name,
)
from model.job import Assignment, JobSpec
from model.stealing import (
    AskDepths,
    FetchLocal,
    StealFrom,
    StealPacer,
    StealPlan,
    WaitForWork,
    fetch_done,
    fetch_loop,
    grant_steal,
    plan_steal,
)
from model.workers import WorkerRegistry, pick_waiter, validate_slots, validate_worker_id

node_names = st.from_regex(r"\A[a-z][a-z0-9]{0,31}\Z")
incarnations = st.from_regex(r"\A[0-9a-f]{1,16}\Z")


# ---------------------------------------------------------------------------- ids
@given(node=node_names, incarnation=incarnations, n=st.integers(1, 300))
def test_ids_are_unique_ordered_and_name_their_owner(node: str, incarnation: str, n: int) -> None:
    factory = JobIdFactory(node, incarnation)
    ids = [factory.new_id() for _ in range(n)]
    assert len(set(ids)) == n
    assert ids == sorted(ids)  # fixed width: string order is creation order
    for seq, job_id in enumerate(ids, start=1):
        assert len(job_id) <= MAX_JOB_ID_CHARS
        assert parse_job_id(job_id) == (node, incarnation, seq)
        assert owner_of(job_id) == node


def test_ids_differ_across_incarnations_and_nodes() -> None:
    a1, a2, b1 = JobIdFactory("a", "1"), JobIdFactory("a", "2"), JobIdFactory("b", "1")
    ids = [f.new_id() for f in (a1, a2, b1) for _ in range(50)]
    assert len(set(ids)) == 150


def test_factory_validates_its_parts() -> None:
    # a trailing newline once slipped through (`$` matches before it): ids must round-trip
    for node in ("", "A", "1node", "node-1", "n" * 33, "nöde", "node\n"):
        with pytest.raises(InvalidArgument):
            JobIdFactory(node, "1")
    for incarnation in ("", "G", "1" * 17, "-1", "0x1", "1\n"):
        with pytest.raises(InvalidArgument):
            JobIdFactory("node", incarnation)
    assert validate_node_name("n0") == "n0"


@pytest.mark.parametrize(
    "job_id",
    [
        "",
        "node",
        "node-1",
        "node-1-",
        "Node-1-1",
        "node-1-g",
        "node-1-1-1",
        "node--1",
        "node-1-" + "1" * 17,
        "n" * 33 + "-1-1",
        "node-1-1\n",
        "x" * 10_000,
    ],
)
def test_malformed_ids_are_invalid_argument(job_id: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_job_id(job_id)
    assert info.value.code is Code.INVALID_ARGUMENT
    assert len(info.value.message) < 200  # a huge id is not echoed back whole


@given(st.text(max_size=100))
def test_parse_never_raises_anything_but_invalid_argument(text: str) -> None:
    try:
        node, incarnation, seq = parse_job_id(text)
    except InvalidArgument:
        return
    assert text == f"{node}-{incarnation}-{text.rsplit('-', 1)[1]}"
    assert seq == int(text.rsplit("-", 1)[1], 16)


def test_route_serves_locally_forwards_once_then_gives_up() -> None:
    job_id = JobIdFactory("owner", "1").new_id()
    assert route(job_id, "owner", already_forwarded=False) is None
    assert route(job_id, "owner", already_forwarded=True) is None  # arrived at the owner
    assert route(job_id, "other", already_forwarded=False) == "owner"
    with pytest.raises(Unavailable) as info:
        route(job_id, "other", already_forwarded=True)
    assert info.value.code is Code.UNAVAILABLE
    with pytest.raises(InvalidArgument):
        route("bogus", "owner", already_forwarded=False)


# ---------------------------------------------------------------------------- stealing
def test_plan_steal_only_when_idle() -> None:
    peers = {"b": 10}
    assert plan_steal("a", free_slots=0, local_ready=0, peer_ready=peers) is None
    assert plan_steal("a", free_slots=4, local_ready=1, peer_ready=peers) is None
    assert plan_steal("a", free_slots=4, local_ready=0, peer_ready={}) is None
    assert plan_steal("a", free_slots=4, local_ready=0, peer_ready={"b": 0, "c": -1}) is None
    assert plan_steal("a", free_slots=4, local_ready=0, peer_ready={"a": 100}) is None  # never itself


def test_plan_steal_picks_the_busiest_and_takes_about_half() -> None:
    plan = plan_steal("a", free_slots=100, local_ready=0, peer_ready={"b": 10, "c": 30, "d": 20})
    assert plan == StealPlan("c", 15)
    # capped by the free slots
    assert plan_steal("a", free_slots=3, local_ready=0, peer_ready={"c": 30}) == StealPlan("c", 3)
    # at least one job, even from a queue of one
    assert plan_steal("a", free_slots=3, local_ready=0, peer_ready={"c": 1}) == StealPlan("c", 1)


def test_plan_steal_breaks_ties_by_node_name() -> None:
    assert plan_steal("a", 5, 0, {"z": 8, "m": 8, "q": 8}) == StealPlan("m", 4)
    assert plan_steal("a", 5, 0, {"q": 8, "z": 8, "m": 8}) == StealPlan("m", 4)


@given(
    free=st.integers(-2, 50),
    local=st.integers(0, 5),
    peers=st.dictionaries(st.sampled_from("abcdefg"), st.integers(-3, 100), max_size=7),
)
def test_plan_steal_properties(free: int, local: int, peers: dict[str, int]) -> None:
    plan = plan_steal("a", free, local, peers)
    candidates = {n: d for n, d in peers.items() if n != "a" and d > 0}
    if free <= 0 or local > 0 or not candidates:
        assert plan is None
        return
    assert plan is not None
    deepest = max(candidates.values())
    assert plan.victim == min(n for n, d in candidates.items() if d == deepest)
    assert 1 <= plan.max_jobs <= free
    assert plan.max_jobs == min(free, max(1, deepest // 2))


def test_grant_steal_keeps_work_for_local_free_slots() -> None:
    assert grant_steal(requested=5, local_ready=10, local_free_slots=2) == 5
    assert grant_steal(requested=5, local_ready=10, local_free_slots=7) == 3
    assert grant_steal(requested=5, local_ready=10, local_free_slots=10) == 0
    assert grant_steal(requested=5, local_ready=3, local_free_slots=10) == 0
    assert grant_steal(requested=0, local_ready=10, local_free_slots=0) == 0
    assert grant_steal(requested=-4, local_ready=10, local_free_slots=0) == 0


@given(st.integers(-10, 100), st.integers(0, 100), st.integers(0, 100))
def test_grant_steal_bounds(requested: int, ready: int, free: int) -> None:
    granted = grant_steal(requested, ready, free)
    assert 0 <= granted <= max(0, requested)
    assert granted <= max(0, ready - free)
    assert granted == max(0, min(requested, ready - free))


# ---------------------------------------------------------------------------- workers
CONFIG = CoreConfig(worker_ttl=10.0, lease_duration=10.0, heartbeat_interval=2.0)


def test_worker_ttl_expiry() -> None:
    reg = WorkerRegistry(CONFIG)
    assert reg.next_deadline() is None
    reg.heartbeat(0.0, "w1", 4, 4)
    reg.heartbeat(1.0, "w2", 2, 1)
    assert reg.next_deadline() == 10.0
    assert reg.handle_timer(9.99) == []
    reg.heartbeat(5.0, "w1", 4, 3)  # renewed: its deadline moves to 15
    assert reg.handle_timer(10.0) == []
    assert set(reg.workers) == {"w1", "w2"}
    assert reg.handle_timer(11.0) == [WorkerLost("w2")]
    assert set(reg.workers) == {"w1"}
    assert reg.workers["w1"].free_slots == 3
    assert reg.handle_timer(14.99) == []
    reg.touch(14.0, "w1")  # any call proves it alive
    assert reg.handle_timer(15.0) == []
    assert reg.handle_timer(24.0) == [WorkerLost("w1")]
    assert reg.workers == {}
    assert reg.handle_timer(1000.0) == []


def test_touch_does_not_register_unknown_workers() -> None:
    reg = WorkerRegistry(CONFIG)
    reg.touch(0.0, "ghost")
    assert reg.workers == {}
    assert reg.next_deadline() is None


def test_worker_lost_once_and_can_come_back() -> None:
    reg = WorkerRegistry(CONFIG)
    reg.heartbeat(0.0, "w", 1, 1)
    assert reg.handle_timer(10.0) == [WorkerLost("w")]
    reg.heartbeat(20.0, "w", 1, 1)
    assert "w" in reg.workers
    assert reg.handle_timer(29.0) == []
    assert reg.handle_timer(30.0) == [WorkerLost("w")]


def test_forget_a_worker_that_left() -> None:
    reg = WorkerRegistry(CONFIG)
    reg.heartbeat(0.0, "w", 1, 1)
    assert reg.forget("w") is True
    assert reg.forget("w") is False
    assert reg.handle_timer(100.0) == []  # a worker that said goodbye is not reported lost
    reg.heartbeat(200.0, "w", 1, 1)
    reg.heartbeat(205.0, "w", 1, 1)
    assert reg.handle_timer(214.0) == []
    assert reg.handle_timer(215.0) == [WorkerLost("w")]  # reported exactly once
    assert reg.handle_timer(1000.0) == []


@given(
    events=st.lists(
        st.tuples(st.sampled_from(["w0", "w1", "w2"]), st.floats(0, 30, allow_nan=False)),
        max_size=30,
    ),
    check=st.floats(0, 100, allow_nan=False),
)
def test_registry_matches_a_reference(events: list[tuple[str, float]], check: float) -> None:
    reg = WorkerRegistry(CONFIG)
    now = 0.0
    last_seen: dict[str, float] = {}
    for worker, gap in events:
        now += gap
        expired = {w for w, t in last_seen.items() if t + CONFIG.worker_ttl <= now}
        lost = [event.worker_id for event in reg.handle_timer(now)]
        assert len(lost) == len(set(lost)) and set(lost) == expired
        for w in expired:
            del last_seen[w]
        reg.heartbeat(now, worker, 1, 1)
        last_seen[worker] = now
        assert set(reg.workers) == set(last_seen)
    now += check
    reg.handle_timer(now)
    assert set(reg.workers) == {w for w, t in last_seen.items() if t + CONFIG.worker_ttl > now}


def test_worker_validation() -> None:
    reg = WorkerRegistry(CONFIG)
    for bad in ("", "w" * 129, "tab\there", "nl\n"):
        with pytest.raises(InvalidArgument):
            reg.heartbeat(0.0, bad, 1, 1)
        with pytest.raises(InvalidArgument):
            validate_worker_id(bad)
    cap = CONFIG.max_worker_slots
    for total, free in ((-1, 0), (1, -1), (2, 3), (cap + 1, 0), (0, cap + 1), (2**31 - 1, 2**31 - 1)):
        with pytest.raises(InvalidArgument):
            validate_slots(total, free, cap)
        with pytest.raises(InvalidArgument):
            reg.heartbeat(0.0, "w", total, free)
    validate_slots(0, 5, cap)  # total 0 means "unknown"
    validate_slots(cap, cap, cap)
    assert reg.workers == {}


def test_a_heartbeat_cannot_claim_slots_that_switch_stealing_off() -> None:
    """Issue 26: a fake heartbeat with free_slots 2**31-1 made the owner keep all its ready work
    (grant_steal leaves what local free slots would take). The claim is capped and refused."""
    config = CoreConfig(max_worker_slots=16)
    reg = WorkerRegistry(config)
    with pytest.raises(InvalidArgument, match="at most 16 slots"):
        reg.heartbeat(0.0, "fake", 2**31 - 1, 2**31 - 1)
    assert reg.workers == {}
    reg.heartbeat(0.0, "fake", 16, 16)
    local_free = sum(w.free_slots for w in reg.workers.values())
    assert grant_steal(24, 24 + local_free, local_free) == 24  # the rest is granted to a thief


def test_only_workers_that_held_work_are_lost_loudly() -> None:
    """A heartbeat from a new worker id that never got work nor named running attempts expires as
    WorkerLost(held_work=False): drivers neither release it nor log above debug (issue 26)."""
    reg = WorkerRegistry(CONFIG)
    reg.heartbeat(0.0, "idle", 1, 1)
    reg.heartbeat(0.0, "busy", 1, 0, holds_work=True)
    reg.heartbeat(0.0, "fetched", 1, 1)
    reg.note_work("fetched")
    reg.heartbeat(1.0, "idle", 1, 1)  # a later heartbeat without work keeps it idle
    lost = {w.worker_id: w.held_work for w in reg.handle_timer(1.0 + CONFIG.worker_ttl + 1)}
    assert lost == {"idle": False, "busy": True, "fetched": True}


def test_pick_waiter_prefers_most_free_then_longest_waiting() -> None:
    assert pick_waiter([], {}) is None
    assert pick_waiter(["a", "b"], {"a": 0, "b": 0}) is None
    assert pick_waiter(["a", "b"], {}) is None
    assert pick_waiter(["a", "b", "c"], {"a": 1, "b": 3, "c": 2}) == "b"
    assert pick_waiter(["a", "b", "c"], {"a": 2, "b": 2, "c": 2}) == "a"
    assert pick_waiter(["c", "b", "a"], {"a": 2, "b": 2, "c": 2}) == "c"
    assert pick_waiter(["a", "b"], {"b": 1, "z": 10}) == "b"  # only waiters count


@given(
    st.lists(st.sampled_from("abcdef"), unique=True, max_size=6),
    st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 5)),
)
def test_pick_waiter_properties(waiting: list[str], free: dict[str, int]) -> None:
    chosen = pick_waiter(waiting, free)
    best = max((free.get(w, 0) for w in waiting), default=0)
    if best == 0:
        assert chosen is None
    else:
        assert chosen == next(w for w in waiting if free.get(w, 0) == best)


def test_split_by_owner_groups_attempts_by_job_owner() -> None:
    running = [("a-1-0000000001", 1), ("b-1-0000000002", 3), ("a-1-0000000003", 2), ("c-1-0000000004", 1)]
    local, remote = split_by_owner("a", running)
    assert local == [("a-1-0000000001", 1), ("a-1-0000000003", 2)]
    assert remote == {"b": [("b-1-0000000002", 3)], "c": [("c-1-0000000004", 1)]}


def test_steal_pacer_waits_out_the_idle_interval_then_backs_off_per_round() -> None:
    pacer = StealPacer(steal_interval=0.05, max_idle_poll=0.3)
    assert pacer.idle_wait(idle_since=10.0, now=10.02) == pytest.approx(0.03)
    assert pacer.idle_wait(idle_since=10.0, now=10.06) == 0
    assert pacer.needs_depths(10.06)
    pacer.record_depths(10.06, {"b": 0, "c": 0})
    assert not pacer.needs_depths(10.07)
    assert pacer.plan("a", free_slots=2, local_ready=0) is None  # nothing to steal: back off once
    assert pacer.plan("a", free_slots=2, local_ready=0) is None  # same round: no second doubling
    assert pacer.poll_interval == pytest.approx(0.1)
    for round_start in (10.2, 10.4, 10.8):
        pacer.record_depths(round_start, {"b": 0})
        assert pacer.plan("a", 2, 0) is None
    assert pacer.poll_interval == pytest.approx(0.3)  # capped at max_idle_poll


def test_steal_pacer_resets_only_on_a_steal_that_got_work() -> None:
    pacer = StealPacer(steal_interval=0.05, max_idle_poll=0.8)
    pacer.record_depths(1.0, {"b": 8, "c": 2})
    plan = pacer.plan("a", free_slots=2, local_ready=0)
    assert plan == StealPlan("b", 2)
    pacer.record_steal(plan, got=0)  # the victim kept its work for its own slots
    assert pacer.depths["b"] == 0 and pacer.poll_interval == pytest.approx(0.1)
    pacer.record_depths(2.0, {"b": 8, "c": 2})
    plan = pacer.plan("a", free_slots=2, local_ready=0)
    assert plan is not None
    pacer.record_steal(plan, got=2)
    assert pacer.depths["b"] == 6 and pacer.poll_interval == pytest.approx(0.05)
    pacer.record_failure(StealPlan("c", 1))
    assert pacer.depths["c"] == 0 and pacer.poll_interval == pytest.approx(0.1)


@given(
    idle_since=st.floats(min_value=0, max_value=1e7, allow_nan=False),
    elapsed_fraction=st.floats(min_value=0, max_value=1),
)
def test_steal_pacer_idle_wait_lands_on_the_steal_time(idle_since: float, elapsed_fraction: float) -> None:
    """Sleeping exactly idle_wait() must reach the steal time, even on a large clock; otherwise a
    simulated fetch waits zero seconds forever."""
    pacer = StealPacer(steal_interval=0.05)
    now = idle_since + 0.05 * elapsed_fraction
    assert pacer.idle_wait(idle_since, now + pacer.idle_wait(idle_since, now)) == 0


@given(
    peers=st.integers(min_value=0, max_value=40),
    fanout=st.integers(min_value=0, max_value=50),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_steal_pacer_fanout_asks_a_random_subset_in_order(peers: int, fanout: int, seed: int) -> None:
    names = [f"n{i:02d}" for i in range(peers)]
    asked = StealPacer(0.05, fanout=fanout, rng=np.random.default_rng(seed)).peers_to_ask(names)
    again = StealPacer(0.05, fanout=fanout, rng=np.random.default_rng(seed)).peers_to_ask(names)
    assert asked == again  # the same stream draws the same peers
    assert len(asked) == (peers if fanout == 0 else min(fanout, peers))
    assert asked == sorted(set(asked)) and set(asked) <= set(names)


def test_steal_pacer_fanout_rounds_draw_afresh_and_cover_every_peer() -> None:
    names = [f"n{i:02d}" for i in range(20)]
    pacer = StealPacer(0.05, fanout=3, rng=np.random.default_rng(7))
    rounds = [tuple(pacer.peers_to_ask(names)) for _ in range(200)]
    assert len(set(rounds)) > 100  # not one fixed subset
    assert {name for r in rounds for name in r} == set(names)


def test_steal_pacer_fanout_needs_a_generator_and_is_not_negative() -> None:
    with pytest.raises(ValueError, match="random generator"):
        StealPacer(0.05, fanout=2)
    with pytest.raises(ValueError, match=">= 0"):
        StealPacer(0.05, fanout=-1, rng=np.random.default_rng(0))


# ---------------------------------------------------------------------------- the fetch loop
def _assignment(job_id: str) -> Assignment:
    return Assignment(job_id, 1, JobSpec.make("echo"), 10.0, 10.0, "w")


def _ends(loop: Any, reply: Any) -> list[Assignment]:
    with pytest.raises(StopIteration) as done:
        loop.send(reply)
    result: list[Assignment] = done.value.value
    return result


def test_a_fetch_needs_no_loop_with_local_work_while_draining_or_without_free_slots() -> None:
    assert fetch_done([_assignment("n1-1-1")], False, 2)
    assert fetch_done([], True, 2)  # the node drains: an empty answer now
    assert fetch_done([], False, 0)
    assert not fetch_done([], False, 2)
    loop = fetch_loop(StealPacer(0.05), "n1", ["n2"], 2, 5.0, 0.0, (0.0, [], True), lambda: 0)
    assert _ends(loop, None) == []  # the loop agrees when handed such a first reply


def test_fetch_loop_waits_for_local_work_then_steals_from_the_busiest_peer() -> None:
    pacer = StealPacer(0.05)
    loop = fetch_loop(pacer, "n1", ["n2", "n3"], 4, 5.0, 0.0, (0.0, [], False), lambda: 0)
    assert next(loop) == WaitForWork(0.05)  # idle, but not for steal_interval yet
    assert loop.send(None) == FetchLocal()
    assert loop.send((0.05, [], False)) == AskDepths(["n2", "n3"])
    assert loop.send((0.06, {"n2": 2, "n3": 9})) == StealFrom(StealPlan("n3", 4))
    stolen = [_assignment("n3-1-1")]
    assert _ends(loop, (0.07, stolen)) == stolen


def test_fetch_loop_takes_local_work_that_arrives_while_it_waits() -> None:
    loop = fetch_loop(StealPacer(0.05), "n1", ["n2"], 1, 5.0, 0.0, (0.0, [], False), lambda: 0)
    assert next(loop) == WaitForWork(0.05)
    assert loop.send(None) == FetchLocal()
    local = [_assignment("n1-1-7")]
    assert _ends(loop, (0.01, local, False)) == local  # woken by new local work: no steal


def test_fetch_loop_backs_off_after_a_failed_steal_and_never_waits_past_its_wait() -> None:
    pacer = StealPacer(0.05)
    loop = fetch_loop(pacer, "n1", ["n2"], 1, 0.3, 0.0, (0.0, [], False), lambda: 0)
    assert next(loop) == WaitForWork(0.05)
    loop.send(None)
    assert loop.send((0.05, [], False)) == AskDepths(["n2"])
    assert loop.send((0.05, {"n2": 3})) == StealFrom(StealPlan("n2", 1))
    op = loop.send((0.06, None))  # the call failed: no retry of this victim before the next round
    assert op == WaitForWork(pacer.poll_interval) and pacer.poll_interval == 0.1
    assert loop.send(None) == FetchLocal()
    assert loop.send((0.16, [], False)) == AskDepths(["n2"])  # a poll interval later: a new round
    op = loop.send((0.16, {"n2": 0}))  # nothing to steal: the interval doubles again
    assert pacer.poll_interval == 0.2
    assert isinstance(op, WaitForWork) and op.timeout == pytest.approx(0.14)  # what is left of the wait
    loop.send(None)
    assert _ends(loop, (0.3, [], False)) == []


@given(
    wait=st.floats(0.0, 3.0),
    steal_interval=st.floats(0.001, 0.5),
    depths=st.lists(st.integers(0, 5), min_size=1, max_size=30),
    peers=st.integers(0, 3),
)
def test_fetch_loop_ends_by_its_deadline_and_steals_only_once_idle(
    wait: float, steal_interval: float, depths: list[int], peers: int
) -> None:
    """Driven with nothing local and steals that find nothing: every wait is positive and ends by the
    deadline, no steal comes before steal_interval of idleness, and the loop returns by the deadline."""
    pacer = StealPacer(steal_interval)
    names = [f"n{i + 2}" for i in range(peers)]
    loop = fetch_loop(pacer, "n1", names, 2, wait, 10.0, (10.0, [], False), lambda: 0)
    now, replies = 10.0, iter(depths * 1000)
    reply: object = None
    for _ in range(10_000):
        try:
            op = loop.send(reply)
        except StopIteration as done:
            assert done.value == [] and now <= 10.0 + wait + 1e-9
            return
        if isinstance(op, WaitForWork):
            assert op.timeout > 0 and now + op.timeout <= 10.0 + wait + 1e-9
            now += op.timeout
            reply = None
        elif isinstance(op, FetchLocal):
            reply = (now, [], False)
        elif isinstance(op, AskDepths):
            assert now >= 10.0 + steal_interval
            reply = (now, {p: next(replies) for p in op.peers})
        else:
            assert now >= 10.0 + steal_interval
            reply = (now, [])  # the victim granted nothing
    raise AssertionError("the fetch loop did not end")
