"""Job ids and ownership. A job id names the node that accepted (and owns) it:

    <node>-<incarnation>-<sequence in hex>

so Design B routes a request for any job to its owner without a lookup.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from model.errors import InvalidArgument, Unavailable

_NODE = re.compile(r"^[a-z][a-z0-9]{0,31}$")
_INCARNATION = re.compile(r"^[0-9a-f]{1,16}$")
_JOB_ID = re.compile(r"^([a-z][a-z0-9]{0,31})-([0-9a-f]{1,16})-([0-9a-f]{1,16})$")
MAX_JOB_ID_CHARS = 72


def validate_node_name(node: str) -> str:
    if not _NODE.fullmatch(node):
        raise InvalidArgument(f"node name {node!r} must match {_NODE.pattern}")
    return node


@dataclass(slots=True)
class JobIdFactory:
    """Makes unique ids. `incarnation` must differ each time the owner restarts (the driver picks it)."""

    node: str
    incarnation: str
    next_sequence: int = 1

    def __post_init__(self) -> None:
        validate_node_name(self.node)
        if not _INCARNATION.fullmatch(self.incarnation):
            raise InvalidArgument("incarnation must be 1-16 lowercase hex digits")

    def new_id(self) -> str:
        seq = self.next_sequence
        self.next_sequence = seq + 1
        # fixed width keeps ids of one incarnation in creation order when compared as strings
        return f"{self.node}-{self.incarnation}-{seq:010x}"

    @property
    def prefix(self) -> str:
        """What every id this factory makes starts with: `<node>-<incarnation>-`."""
        return f"{self.node}-{self.incarnation}-"


class SequenceIds:
    """Ids of one factory as their sequence numbers: what a table keeps instead of a string per job
    (8 bytes in an array against about 65 for a str). `sequence` is None for any other id (another
    incarnation's, restored): those are kept as strings."""

    __slots__ = ("_prefix", "_width")

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._width = len(prefix) + 10

    def sequence(self, job_id: str) -> int | None:
        if len(job_id) != self._width or not job_id.startswith(self._prefix):
            return None
        tail = job_id[-10:]
        try:
            seq = int(tail, 16)
        except ValueError:
            return None
        # int() also takes upper case, '_' and blanks: only the exact spelling new_id makes is ours
        return seq if seq >= 0 and f"{seq:010x}" == tail else None

    def job_id(self, seq: int) -> str:
        return f"{self._prefix}{seq:010x}"


def parse_job_id(job_id: str) -> tuple[str, str, int]:
    """Returns (owner node, incarnation, sequence); InvalidArgument when malformed."""
    match = _JOB_ID.fullmatch(job_id) if len(job_id) <= MAX_JOB_ID_CHARS else None
    if match is None:
        raise InvalidArgument(f"malformed job_id {job_id[:MAX_JOB_ID_CHARS]!r}")
    return match.group(1), match.group(2), int(match.group(3), 16)


def owner_of(job_id: str) -> str:
    return parse_job_id(job_id)[0]


def route(job_id: str, self_node: str, already_forwarded: bool) -> str | None:
    """Where a request for `job_id` must go: None to serve locally, else the owner to forward to once.

    A request that was already forwarded and still is not at its owner means the cluster views
    disagree; answering UNAVAILABLE (retryable) beats forwarding in a loop.
    """
    owner = owner_of(job_id)
    if owner == self_node:
        return None
    if already_forwarded:
        raise Unavailable(f"job {job_id} is owned by {owner}, not {self_node}, and was already forwarded")
    return owner


def split_by_owner(
    self_node: str, running: Iterable[tuple[str, int]]
) -> tuple[list[tuple[str, int]], dict[str, list[tuple[str, int]]]]:
    """(attempts this node owns, {other owner: its attempts}): where a worker's heartbeat goes."""
    local: list[tuple[str, int]] = []
    remote: dict[str, list[tuple[str, int]]] = {}
    for job_id, attempt in running:
        owner = owner_of(job_id)
        if owner == self_node:
            local.append((job_id, attempt))
        else:
            remote.setdefault(owner, []).append((job_id, attempt))
    return local, remote


def request_homes(request_id: str, nodes: Sequence[str]) -> tuple[str, str]:
    """(primary, fallback): the two nodes that may own the job of an idempotent submit (Design B).

    Every node computes the same pair from the same node list, so a retry sent to any node is routed
    to the job. The primary is the key's hash modulo the sorted node list; the fallback is picked
    among the other nodes with an independent part of the same hash, so the keys of a node that is
    down spread over all the others. One node: both are that node.
    """
    ordered = sorted(nodes)
    if not ordered:
        raise InvalidArgument("a cluster has at least one node")
    digest = hashlib.sha256(request_id.encode()).digest()
    primary = ordered[int.from_bytes(digest[:8], "big") % len(ordered)]
    others = [n for n in ordered if n != primary]
    if not others:
        return primary, primary
    return primary, others[int.from_bytes(digest[8:16], "big") % len(others)]


SubmitRole = Literal["primary", "fallback", "deliver", "forward", "misrouted"]


@dataclass(frozen=True, slots=True)
class SubmitRoute:
    """What a Design B node does with a submit that carries a request_id (the protocol is
    realsys/mono/idempotency.py's docstring; this is its routing decision, sans I/O):

    primary    this node is the key's primary home: it makes or finds the job
    fallback   this node is the fallback home: it forwards to the primary, or makes the job when
               it cannot reach it
    deliver    the primary found the key's job here: answer from it, forward nothing
    forward    no home: forward to `forward_to` in order (reachable homes first) until one answers
    misrouted  a forwarded submit reached a node that is no home of the key (peer lists disagree)
    """

    role: SubmitRole
    primary: str
    fallback: str
    forward_to: tuple[str, ...] = ()


def route_submit(
    request_id: str,
    node: str,
    nodes: Sequence[str],
    *,
    forwarded: bool,
    delivered: bool,
    suspected: Iterable[str] = (),
) -> SubmitRoute:
    """The route of an idempotent submit on `node`; `suspected`: peers this node cannot reach now
    (tried last, not skipped: a suspicion may be stale)."""
    primary, fallback = request_homes(request_id, nodes)
    if delivered:
        # a hand-over from the primary goes only to a home of the key: anywhere else it is misrouted
        # (a forged mark must not make the key's job on a third node)
        home = node in (primary, fallback)
        return SubmitRoute("deliver" if home else "misrouted", primary, fallback)
    if node == primary:
        return SubmitRoute("primary", primary, fallback)
    if node == fallback:
        return SubmitRoute("fallback", primary, fallback)
    if forwarded:
        return SubmitRoute("misrouted", primary, fallback)
    down = set(suspected)
    homes = [primary] if primary == fallback else [primary, fallback]
    order = tuple(sorted(homes, key=lambda home: home in down))  # stable: the primary first when equal
    return SubmitRoute("forward", primary, fallback, order)
