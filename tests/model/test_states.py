"""The lifecycle table: what is allowed, what is refused, and that the drawn diagram is current."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from model.errors import Code, FailedPrecondition
from model.states import (
    ACTIVE,
    TERMINAL,
    TRANSITIONS,
    Event,
    IllegalTransition,
    JobState,
    lifecycle_markdown,
    next_state,
    to_mermaid,
)

LIFECYCLE_MD = Path(__file__).resolve().parents[2] / "model" / "lifecycle.md"

ALL_PAIRS = list(itertools.product(JobState, Event))
ILLEGAL_PAIRS = [pair for pair in ALL_PAIRS if pair not in TRANSITIONS]


def _id(pair: tuple[JobState, Event]) -> str:
    return f"{pair[0].name}-{pair[1].name}"


@pytest.mark.parametrize("pair", list(TRANSITIONS), ids=_id)
def test_allowed_pairs_follow_the_table(pair: tuple[JobState, Event]) -> None:
    state, event = pair
    assert next_state(state, event) is TRANSITIONS[pair]


@pytest.mark.parametrize("pair", ILLEGAL_PAIRS, ids=_id)
def test_every_pair_not_in_the_table_is_illegal(pair: tuple[JobState, Event]) -> None:
    state, event = pair
    with pytest.raises(IllegalTransition) as info:
        next_state(state, event)
    err = info.value
    assert isinstance(err, FailedPrecondition)
    assert err.code is Code.FAILED_PRECONDITION
    assert err.state is state
    assert err.event is event
    assert state.name in err.message and event.name in err.message


def test_the_table_covers_a_sensible_share_of_pairs() -> None:
    # guards the parametrisation above: both lists must be non-trivial and partition all pairs
    assert len(ILLEGAL_PAIRS) + len(TRANSITIONS) == len(JobState) * len(Event)
    assert len(TRANSITIONS) == 12
    assert all(isinstance(s, JobState) and isinstance(e, Event) for s, e in TRANSITIONS)


@pytest.mark.parametrize("state", sorted(TERMINAL), ids=lambda s: s.name)
def test_terminal_states_absorb(state: JobState) -> None:
    assert not any(src is state for src, _ in TRANSITIONS)
    for event in Event:
        with pytest.raises(IllegalTransition):
            next_state(state, event)


def test_terminal_and_active_sets() -> None:
    assert frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}) == TERMINAL
    assert frozenset({JobState.RUNNING, JobState.CANCELLING}) == ACTIVE
    assert not TERMINAL & ACTIVE


def test_unspecified_is_only_left_by_submit_and_never_entered() -> None:
    assert [e for (s, e) in TRANSITIONS if s is JobState.STATE_UNSPECIFIED] == [Event.SUBMIT]
    assert JobState.STATE_UNSPECIFIED not in TRANSITIONS.values()
    assert next_state(JobState.STATE_UNSPECIFIED, Event.SUBMIT) is JobState.PENDING


def _reachable(start: JobState) -> set[JobState]:
    """The states TRANSITIONS can lead to from `start`, `start` included."""
    seen = {start}
    frontier = [start]
    while frontier:
        src = frontier.pop()
        for (s, _), dst in TRANSITIONS.items():
            if s is src and dst not in seen:
                seen.add(dst)
                frontier.append(dst)
    return seen


def test_every_state_is_reachable_from_submit() -> None:
    assert _reachable(JobState.STATE_UNSPECIFIED) == set(JobState)


def test_every_non_terminal_state_can_reach_a_terminal_state() -> None:
    for start in set(JobState) - TERMINAL:
        assert _reachable(start) & TERMINAL, start


def test_a_cancelling_job_never_runs_again() -> None:
    for event in Event:
        if (JobState.CANCELLING, event) in TRANSITIONS:
            assert next_state(JobState.CANCELLING, event) in {
                JobState.CANCELLING,
                JobState.SUCCEEDED,
                JobState.CANCELLED,
            }


def test_the_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[(JobState.SUCCEEDED, Event.DISPATCH)] = JobState.RUNNING  # type: ignore[index]


def test_mermaid_draws_every_transition() -> None:
    diagram = to_mermaid()
    for (src, event), dst in TRANSITIONS.items():
        if src is JobState.STATE_UNSPECIFIED:
            assert f"[*] --> {dst.name}: {event.name}" in diagram
        else:
            assert f"    {src.name} --> {dst.name}: {event.name}" in diagram
    for state in TERMINAL:
        assert f"    {state.name} --> [*]" in diagram


def test_lifecycle_md_is_fresh() -> None:
    committed = LIFECYCLE_MD.read_text()
    assert committed == lifecycle_markdown(), (
        "model/lifecycle.md is stale: run `python -m model.states` to redraw it from TRANSITIONS"
    )
