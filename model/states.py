"""The job lifecycle as one table: state x event -> state.

Every state change in dtq goes through `next_state`. The diagram in model/lifecycle.md is drawn
from TRANSITIONS by `python -m model.states` (a test fails when it is stale).
"""

from __future__ import annotations

from enum import IntEnum
from types import MappingProxyType
from typing import Final

from model.errors import FailedPrecondition


class JobState(IntEnum):
    # values match dtq.v1.JobState
    STATE_UNSPECIFIED = 0
    PENDING = 1
    RUNNING = 2
    CANCELLING = 3
    SUCCEEDED = 4
    FAILED = 5
    CANCELLED = 6


class Event(IntEnum):
    SUBMIT = 1  # accepted by the owner
    DISPATCH = 2  # leased to a worker under a new attempt
    SUCCEED = 3  # the attempt reported success
    RETRY = 4  # the attempt failed (or its lease expired) and attempts remain
    FAIL = 5  # the attempt failed (or its lease expired) and no attempt remains, or not retryable
    CANCEL = 6  # a client asked to cancel
    CANCEL_ACK = 7  # the worker stopped the handler on a cancel request


S, E = JobState, Event

TRANSITIONS: Final = MappingProxyType(
    {
        (S.STATE_UNSPECIFIED, E.SUBMIT): S.PENDING,
        (S.PENDING, E.DISPATCH): S.RUNNING,
        (S.PENDING, E.CANCEL): S.CANCELLED,
        (S.RUNNING, E.SUCCEED): S.SUCCEEDED,
        (S.RUNNING, E.RETRY): S.PENDING,
        (S.RUNNING, E.FAIL): S.FAILED,
        (S.RUNNING, E.CANCEL): S.CANCELLING,
        # Cancel is best effort: work that finished anyway keeps its result.
        (S.CANCELLING, E.SUCCEED): S.SUCCEEDED,
        # A cancelling job is never run again, whatever ended its attempt.
        (S.CANCELLING, E.RETRY): S.CANCELLED,
        (S.CANCELLING, E.FAIL): S.CANCELLED,
        (S.CANCELLING, E.CANCEL): S.CANCELLING,
        (S.CANCELLING, E.CANCEL_ACK): S.CANCELLED,
    }
)

TERMINAL: Final = frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED})
ACTIVE: Final = frozenset({S.RUNNING, S.CANCELLING})  # states that hold a lease

del S, E


class IllegalTransition(FailedPrecondition):
    def __init__(self, state: JobState, event: Event) -> None:
        super().__init__(f"event {event.name} is not allowed in state {state.name}")
        self.state = state
        self.event = event


def next_state(state: JobState, event: Event) -> JobState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


def to_mermaid() -> str:
    lines = ["stateDiagram-v2", "    [*] --> PENDING: SUBMIT"]
    for (src, event), dst in TRANSITIONS.items():
        if src is JobState.STATE_UNSPECIFIED:
            continue
        lines.append(f"    {src.name} --> {dst.name}: {event.name}")
    lines.extend(f"    {s.name} --> [*]" for s in sorted(TERMINAL))
    return "\n".join(lines)


def lifecycle_markdown() -> str:
    header = (
        "# Job lifecycle\n\n"
        "Generated from `model.states.TRANSITIONS` by `python -m model.states`; do not edit.\n"
        "Any pair not drawn here raises `IllegalTransition` (FAILED_PRECONDITION).\n\n"
    )
    return header + "```mermaid\n" + to_mermaid() + "\n```\n"


if __name__ == "__main__":
    from pathlib import Path

    target = Path(__file__).with_name("lifecycle.md")
    target.write_text(lifecycle_markdown())
    print(f"wrote {target}")
