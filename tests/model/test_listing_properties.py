"""ListJobs: AIP-158 pagination under concurrent inserts, AIP-160 filters, page tokens, merge_pages."""

from __future__ import annotations

import base64
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.config import CoreConfig
from model.errors import Code, InvalidArgument
from model.ids import JobIdFactory
from model.job import Failed, Job, JobError, JobSpec, Succeeded
from model.jobs import JobTable
from model.listing import (
    ListQuery,
    OrderedIndex,
    Page,
    decode_page_token,
    effective_page_size,
    encode_page_token,
    merge_pages,
)
from model.states import JobState

CONFIG = CoreConfig(default_page_size=4, max_page_size=10, max_pending=100_000)
JOB_TYPES = ("alpha", "beta", "gamma")
LABEL_KEYS = ("team", "env")
LABEL_VALUES = ("a", "b")
LISTABLE_STATES = [s for s in JobState if s is not JobState.STATE_UNSPECIFIED]

# a job to insert: (time step >= 0, job type index, labels, what happens to it afterwards)
job_plans = st.tuples(
    st.sampled_from([0.0, 0.0, 0.5, 1.0]),
    st.integers(0, len(JOB_TYPES) - 1),
    st.dictionaries(st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES), max_size=2),
    st.sampled_from(["pending", "running", "cancelling", "succeeded", "failed", "cancelled"]),
)
Plan = tuple[float, int, dict[str, str], str]

queries = st.builds(
    ListQuery.make,
    states=st.lists(st.sampled_from(LISTABLE_STATES), max_size=3, unique=True),
    job_type=st.sampled_from(["", *JOB_TYPES, "nope"]),
    created_after=st.none() | st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5]),
    created_before=st.none() | st.sampled_from([4.0, 6.0, 100.0]),
    labels=st.dictionaries(st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES), max_size=2),
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0


def insert(table: JobTable, clock: Clock, plan: Plan) -> Job:
    step, type_index, labels, fate = plan
    clock.now += step
    job = table.submit(clock.now, JobSpec.make(JOB_TYPES[type_index], labels=labels)).job
    if fate in ("running", "cancelling", "succeeded", "failed"):
        table.lease(clock.now, job.job_id, "w")
    if fate in {"cancelling", "cancelled"}:
        table.cancel(clock.now, job.job_id)
    elif fate == "succeeded":
        table.complete(clock.now, job.job_id, 1, "w", Succeeded())
    elif fate == "failed":
        table.complete(clock.now, job.job_id, 1, "w", Failed(JobError("x")))
    return job


def brute_force(jobs: list[Job], query: ListQuery) -> list[str]:
    def keep(job: Job) -> bool:
        if query.states and job.state not in query.states:
            return False
        if query.job_type and job.spec.job_type != query.job_type:
            return False
        if query.created_after is not None and not job.create_time >= query.created_after:
            return False
        if query.created_before is not None and not job.create_time < query.created_before:
            return False
        return all(job.spec.labels.get(k) == v for k, v in query.labels)

    return [j.job_id for j in sorted(jobs, key=lambda j: (j.create_time, j.job_id)) if keep(j)]


def page_all(table: JobTable, query: ListQuery, sizes: list[int]) -> list[str]:
    seen: list[str] = []
    token = ""
    for i in range(10_000):
        size = sizes[i % len(sizes)] if sizes else 0
        page = table.list_page(query, size, token)
        limit = CONFIG.default_page_size if size == 0 else min(size, CONFIG.max_page_size)
        assert len(page.items) <= limit
        assert page.has_more == bool(page.next_page_token)
        seen.extend(j.job_id for j in page.items)
        if not page.has_more:
            return seen
        assert len(page.items) == limit  # a page short of the limit is the last one
        token = page.next_page_token
    raise AssertionError("pagination did not end")


# ---------------------------------------------------------------------------- filters
@settings(max_examples=150, deadline=None)
@given(plans=st.lists(job_plans, max_size=30), query=queries, sizes=st.lists(st.integers(0, 12), max_size=4))
def test_filters_match_brute_force(plans: list[Plan], query: ListQuery, sizes: list[int]) -> None:
    table = JobTable(CONFIG, JobIdFactory("n", "1"))
    clock = Clock()
    for plan in plans:
        insert(table, clock, plan)
    assert page_all(table, query, sizes) == brute_force(list(table), query)


def test_filter_examples() -> None:
    table = JobTable(CONFIG, JobIdFactory("n", "1"))
    clock = Clock()
    a = insert(table, clock, (0.0, 0, {"team": "a"}, "pending"))
    b = insert(table, clock, (1.0, 1, {"team": "a", "env": "b"}, "succeeded"))
    c = insert(table, clock, (1.0, 0, {}, "cancelled"))

    def ids(query: ListQuery) -> list[str]:
        return page_all(table, query, [0])

    assert ids(ListQuery()) == [a.job_id, b.job_id, c.job_id]
    assert ids(ListQuery.make(job_type="alpha")) == [a.job_id, c.job_id]
    assert ids(ListQuery.make(states=[JobState.SUCCEEDED, JobState.CANCELLED])) == [b.job_id, c.job_id]
    assert ids(ListQuery.make(created_after=1.0)) == [b.job_id, c.job_id]  # inclusive
    assert ids(ListQuery.make(created_before=1.0)) == [a.job_id]  # exclusive
    assert ids(ListQuery.make(created_after=1.0, created_before=1.0)) == []
    assert ids(ListQuery.make(labels={"team": "a"})) == [a.job_id, b.job_id]
    assert ids(ListQuery.make(labels={"team": "a", "env": "b"})) == [b.job_id]
    assert ids(ListQuery.make(labels={"env": ""})) == []  # a missing label does not equal ""


def test_bad_filters_are_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        ListQuery.make(states=[JobState.STATE_UNSPECIFIED])
    with pytest.raises(InvalidArgument):
        ListQuery.make(created_after=2.0, created_before=1.0)


def test_fingerprint_depends_on_every_field_but_not_on_order() -> None:
    base = ListQuery.make(
        states=[JobState.PENDING, JobState.RUNNING], job_type="t", labels={"a": "1", "b": "2"}
    )
    same = ListQuery.make(
        states=[JobState.RUNNING, JobState.PENDING], job_type="t", labels={"b": "2", "a": "1"}
    )
    assert base.fingerprint() == same.fingerprint()
    variants = [
        ListQuery.make(states=[JobState.PENDING], job_type="t", labels={"a": "1", "b": "2"}),
        ListQuery.make(
            states=[JobState.PENDING, JobState.RUNNING], job_type="u", labels={"a": "1", "b": "2"}
        ),
        ListQuery.make(states=[JobState.PENDING, JobState.RUNNING], job_type="t", labels={"a": "1"}),
        ListQuery.make(
            states=[JobState.PENDING, JobState.RUNNING],
            job_type="t",
            labels={"a": "1", "b": "2"},
            created_after=0,
        ),
        ListQuery.make(
            states=[JobState.PENDING, JobState.RUNNING],
            job_type="t",
            labels={"a": "1", "b": "2"},
            created_before=9,
        ),
    ]
    assert len({v.fingerprint() for v in variants} | {base.fingerprint()}) == len(variants) + 1


# ---------------------------------------------------------------------------- pagination under inserts
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    initial=st.lists(job_plans, max_size=25),
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("insert"), st.lists(job_plans, min_size=1, max_size=4)),
            st.tuples(st.just("page"), st.integers(0, 12)),
        ),
        max_size=30,
    ),
    filtered=st.booleans(),
)
def test_pagination_sees_every_job_once_while_jobs_arrive(
    initial: list[Plan], steps: list[tuple[str, object]], filtered: bool
) -> None:
    table = JobTable(CONFIG, JobIdFactory("n", "1"))
    clock = Clock()
    for plan in initial:
        insert(table, clock, plan)
    query = ListQuery.make(job_type="alpha") if filtered else ListQuery()
    existing = brute_force(list(table), query)
    seen: list[str] = []
    token = ""
    done = False

    def fetch(size: int) -> None:
        nonlocal token, done
        page = table.list_page(query, size, token)
        seen.extend(j.job_id for j in page.items)
        token = page.next_page_token
        done = not page.has_more

    for kind, arg in steps:
        if done:
            break
        if kind == "insert":
            assert isinstance(arg, list)
            for plan in arg:
                insert(table, clock, plan)
        else:
            assert isinstance(arg, int)
            fetch(arg)
    while not done:
        fetch(3)
    assert len(seen) == len(set(seen)), "a job was listed twice"
    assert set(existing) <= set(seen), "a job that existed when paging began was skipped"
    # order is stable and new jobs come after: what we saw is the sorted listing of the table now
    assert seen == brute_force(list(table), query)


# ---------------------------------------------------------------------------- page sizes
def test_page_size_default_cap_and_negative() -> None:
    table = JobTable(CONFIG, JobIdFactory("n", "1"))
    for i in range(25):
        table.submit(float(i), JobSpec.make("alpha"))
    assert len(table.list_page(ListQuery(), 0).items) == CONFIG.default_page_size
    assert len(table.list_page(ListQuery(), 3).items) == 3
    assert len(table.list_page(ListQuery(), 11).items) == CONFIG.max_page_size
    assert len(table.list_page(ListQuery(), 10**9).items) == CONFIG.max_page_size
    for bad in (-1, -(10**9)):
        with pytest.raises(InvalidArgument) as info:
            table.list_page(ListQuery(), bad)
        assert info.value.code is Code.INVALID_ARGUMENT
    assert effective_page_size(0, CONFIG) == 4
    assert effective_page_size(10, CONFIG) == 10
    assert effective_page_size(11, CONFIG) == 10


def test_last_page_has_no_token_even_when_exactly_full() -> None:
    table = JobTable(CONFIG, JobIdFactory("n", "1"))
    for i in range(8):
        table.submit(float(i), JobSpec.make("alpha"))
    first = table.list_page(ListQuery(), 4)
    second = table.list_page(ListQuery(), 4, first.next_page_token)
    assert len(second.items) == 4 and not second.has_more and second.next_page_token == ""
    assert table.list_page(ListQuery(), 4, "").items == first.items  # empty token: the start


# ---------------------------------------------------------------------------- tokens
def test_token_replayed_with_another_filter_is_invalid_argument() -> None:
    table = JobTable(CONFIG, JobIdFactory("n", "1"))
    for i in range(10):
        table.submit(float(i), JobSpec.make("alpha", labels={"team": "a"}))
    query = ListQuery.make(job_type="alpha")
    token = table.list_page(query, 2).next_page_token
    assert token
    for other in (
        ListQuery(),
        ListQuery.make(job_type="beta"),
        ListQuery.make(job_type="alpha", states=[JobState.PENDING]),
        ListQuery.make(job_type="alpha", labels={"team": "a"}),
        ListQuery.make(job_type="alpha", created_after=0.0),
    ):
        with pytest.raises(InvalidArgument) as info:
            table.list_page(other, 2, token)
        assert info.value.code is Code.INVALID_ARGUMENT
    assert len(table.list_page(query, 2, token).items) == 2  # the right filter still works


def test_token_round_trip() -> None:
    query = ListQuery.make(job_type="x")
    token = encode_page_token(query, (12.5, "n-1-00000000aa"))
    assert "=" not in token and token.isascii()
    assert decode_page_token(query, token) == (12.5, "n-1-00000000aa")
    assert decode_page_token(query, "") is None


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def assert_rejected(token: str) -> None:
    table = JobTable(CONFIG, JobIdFactory("n", "1"))
    table.submit(0.0, JobSpec.make("alpha"))
    with pytest.raises(InvalidArgument) as info:
        table.list_page(ListQuery(), 1, token)
    assert info.value.code is Code.INVALID_ARGUMENT


FP = ListQuery().fingerprint()


@pytest.mark.parametrize(
    "token",
    [
        "x",
        "%%%",
        "ü",
        "a" * 513,
        b64(b"\xff\xfe"),
        b64(b"null"),
        b64(b"[]"),
        b64(b"42"),
        b64(b'"s"'),
        b64(b"{}"),
        b64(b"[" * 300),
        b64(json.dumps({"v": 2, "f": FP, "t": 1.0, "id": "x"}).encode()),
        b64(json.dumps({"v": 1, "f": FP, "t": "1", "id": "x"}).encode()),
        b64(json.dumps({"v": 1, "f": FP, "t": 1.0, "id": 5}).encode()),
        b64(json.dumps({"v": 1, "f": FP, "t": None, "id": "x"}).encode()),
        b64(json.dumps({"v": 1, "f": FP, "t": True, "id": "x"}).encode()),
        b64(json.dumps({"v": 1, "f": FP, "t": float("nan"), "id": "x"}).encode()),
        b64(json.dumps({"v": 1, "f": FP, "t": float("inf"), "id": "x"}).encode()),
        # an integer too big for a float (once an OverflowError)
        b64(('{"v":1,"f":"' + FP + '","t":1' + "0" * 320 + ',"id":"x"}').encode()),
        b64(json.dumps({"v": 1, "f": "0" * 16, "t": 1.0, "id": "x"}).encode()),
    ],
)
def test_malformed_tokens_are_invalid_argument(token: str) -> None:
    assert len(token) <= 512 or token == "a" * 513
    assert_rejected(token)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    garbage=st.one_of(
        st.text(max_size=600),
        st.binary(max_size=400).map(b64),
        st.binary(max_size=400).map(lambda b: base64.b64encode(b).decode()),
        json_values.map(lambda v: b64(json.dumps(v).encode())),
    )
)
def test_garbage_tokens_are_invalid_argument(garbage: str) -> None:
    if not garbage:
        return  # the empty token is the first page
    assert_rejected(garbage)


@settings(max_examples=300, deadline=None)
@given(
    version=st.sampled_from([1, 1, 1, 2, 0, "1", None, True]),
    t=json_values,
    job_id=json_values,
    extra=st.dictionaries(st.text(max_size=4), json_values, max_size=2),
)
def test_structured_tokens_with_the_right_fingerprint(
    version: object, t: object, job_id: object, extra: dict[str, object]
) -> None:
    """Tokens that decode to the right shape: accepted only when every field is well typed."""
    body = {**extra, "v": version, "f": FP, "t": t, "id": job_id}
    token = b64(json.dumps(body).encode())
    if len(token) > 512:
        return
    table = JobTable(CONFIG, JobIdFactory("n", "1"))
    table.submit(0.0, JobSpec.make("alpha"))
    cursor_time: float | None = None
    if type(t) in (int, float):  # not bool
        assert isinstance(t, int | float)
        try:
            cursor_time = float(t)
        except OverflowError:  # an int too big for a float
            cursor_time = None
        if cursor_time is not None and not math.isfinite(cursor_time):
            cursor_time = None
    well_formed = (
        type(version) is int and version == 1 and isinstance(job_id, str) and cursor_time is not None
    )
    if well_formed:
        page = table.list_page(ListQuery(), 1, token)
        assert isinstance(page, Page)
        assert decode_page_token(ListQuery(), token) == (cursor_time, job_id)
    else:
        with pytest.raises(InvalidArgument):
            table.list_page(ListQuery(), 1, token)


# ---------------------------------------------------------------------------- merge_pages
def merged_listing(
    tables: list[JobTable],
    query: ListQuery,
    sizes: list[int],
    budgets: list[int] | None = None,
    merge_factor: int = 1,
) -> list[str]:
    """Pages through the owners' merged listing; with `budgets`, byte budgets for each page: every
    owner's part, and merge_factor times that for the merged page (Design B uses one budget for
    both; a larger merge budget is the harder case for the merge)."""
    seen: list[str] = []
    token = ""
    for i in range(10_000):
        size = sizes[i % len(sizes)]
        budget = None if budgets is None else budgets[i % len(budgets)]
        parts = [t.list_page(query, size, token, budget) for t in tables]
        merge_budget = None if budget is None else budget * merge_factor
        page = merge_pages(query, parts, size, merge_budget, lambda job: job.status_bytes)
        assert len(page.items) <= size
        if merge_budget is not None and len(page.items) > 1:
            assert sum(j.status_bytes for j in page.items) <= merge_budget
        assert [j.sort_key for j in page.items] == sorted(j.sort_key for j in page.items)
        seen.extend(j.job_id for j in page.items)
        assert page.has_more == bool(page.next_page_token)
        if not page.has_more:
            return seen
        token = page.next_page_token
    raise AssertionError("pagination did not end")


@settings(max_examples=150, deadline=None)
@given(
    plans=st.lists(st.tuples(st.integers(0, 2), job_plans), max_size=40),
    query=queries,
    sizes=st.lists(st.integers(1, 10), min_size=1, max_size=4),
)
def test_merge_pages_equals_a_global_sort(
    plans: list[tuple[int, Plan]], query: ListQuery, sizes: list[int]
) -> None:
    tables = [JobTable(CONFIG, JobIdFactory(node, "1")) for node in ("na", "nb", "nc")]
    clock = Clock()  # one cluster clock, so equal create times across owners happen
    for owner, plan in plans:
        insert(tables[owner], clock, plan)
    everything = [j for t in tables for j in t]
    expected = brute_force(everything, query)
    seen = merged_listing(tables, query, sizes)
    assert len(seen) == len(set(seen))
    assert seen == expected


@settings(max_examples=150, deadline=None)
@given(
    plans=st.lists(st.tuples(st.integers(0, 2), job_plans), min_size=5, max_size=40),
    query=st.just(ListQuery()) | queries,
    sizes=st.lists(st.integers(1, 10), min_size=1, max_size=4),
    # a job's status takes ~550 bytes: budgets of one to a few jobs, and odd ones
    budgets=st.lists(st.sampled_from([1, 600, 1200, 2000]) | st.integers(1, 3000), min_size=1, max_size=4),
    merge_factor=st.sampled_from([1, 3]),
)
def test_byte_bounded_pages_still_see_every_job_once(
    plans: list[tuple[int, Plan]], query: ListQuery, sizes: list[int], budgets: list[int], merge_factor: int
) -> None:
    """Issue 26: pages end at a byte budget (each owner's part and the merged page) and still list
    every matching job exactly once, in order: the merge never passes the last item of a part that
    ended early, since that owner may hold an earlier job it did not send."""
    tables = [JobTable(CONFIG, JobIdFactory(node, "1")) for node in ("na", "nb", "nc")]
    clock = Clock()
    for owner, plan in plans:
        insert(tables[owner], clock, plan)
    expected = brute_force([j for t in tables for j in t], query)
    assert merged_listing(tables, query, sizes, budgets, merge_factor) == expected


def test_a_part_that_ended_early_bounds_the_merge() -> None:
    """Without the bound, the merged page would go on to nb's jobs at 1.5 and 2.5, and its token
    (after 2.5) would skip na's third job (at 2.0) for good."""
    tables = [JobTable(CONFIG, JobIdFactory(node, "1")) for node in ("na", "nb")]
    for i in range(3):
        big = {f"k{n}": "v" * 200 for n in range(3)}
        tables[0].submit(float(i), JobSpec.make("alpha", labels=big))  # ~1.2 KB of status
        tables[1].submit(float(i) + 0.5, JobSpec.make("alpha"))  # small: ~0.5 KB
    budget = 2 * tables[0].find("na-1-0000000001").status_bytes  # type: ignore[union-attr]
    parts = [t.list_page(ListQuery(), 10, "", budget) for t in tables]
    assert [len(p.items) for p in parts] == [2, 3] and parts[0].has_more
    page = merge_pages(ListQuery(), parts, 10, 10 * budget, lambda job: job.status_bytes)
    assert [j.job_id for j in page.items] == [
        "na-1-0000000001",
        "nb-1-0000000001",
        "na-1-0000000002",
    ]  # and not nb's at 1.5: it sorts after na's last sent job, the bound
    assert page.has_more and page.next_page_token


def test_merge_pages_example() -> None:
    tables = [JobTable(CONFIG, JobIdFactory(node, "1")) for node in ("na", "nb")]
    for i in range(7):
        tables[i % 2].submit(float(i // 2), JobSpec.make("alpha"))
    expected = sorted(j.sort_key for t in tables for j in t)
    seen = merged_listing(tables, ListQuery(), [3])
    assert seen == [key[1] for key in expected]
    # equal create times are ordered by job id
    assert seen[:2] == ["na-1-0000000001", "nb-1-0000000001"]


def test_merge_pages_when_one_owner_has_everything() -> None:
    tables = [JobTable(CONFIG, JobIdFactory(node, "1")) for node in ("na", "nb", "nc")]
    for i in range(5):
        tables[1].submit(float(i), JobSpec.make("alpha"))
    for size in (1, 2, 5, 6):
        # a full page from one owner and nothing from the others still has more behind it
        assert merged_listing(tables, ListQuery(), [size]) == [j.job_id for j in tables[1]]


def test_merge_pages_with_no_parts_or_empty_parts() -> None:
    empty: Page[Job] = Page([], False, "")
    page = merge_pages(ListQuery(), [empty, empty], 5)
    assert page.items == [] and not page.has_more and page.next_page_token == ""
    assert merge_pages(ListQuery(), [], 5).items == []


def test_merge_pages_needs_an_effective_page_size() -> None:
    table = JobTable(CONFIG, JobIdFactory("na", "1"))
    table.submit(0.0, JobSpec.make("alpha"))
    parts = [table.list_page(ListQuery(), 0)]
    for bad in (0, -1):
        with pytest.raises(InvalidArgument):
            merge_pages(ListQuery(), parts, bad)


# ---------------------------------------------------------------------------- the index
@given(st.lists(st.tuples(st.floats(0, 10), st.text("abc", max_size=3))))
def test_ordered_index_keeps_keys_sorted_even_when_time_steps_back(keys: list[tuple[float, str]]) -> None:
    index = OrderedIndex()
    for key in keys:
        index.add(key)
    assert index.keys == sorted(keys)
    if keys:
        cursor = sorted(keys)[len(keys) // 2]
        assert list(index.after(cursor)) == [k for k in sorted(keys) if k > cursor]
        index.discard(cursor)
        assert len(index.keys) == len(keys) - 1
    index.discard((99.0, "missing"))  # no error
    assert list(index.after(None)) == index.keys


@given(
    st.lists(st.tuples(st.floats(0, 10), st.text("abc", max_size=3)), unique=True),
    st.data(),
)
def test_ordered_index_drop_removes_exactly_the_named_ids(
    keys: list[tuple[float, str]], data: st.DataObject
) -> None:
    """drop() (retention's batch delete: a front slice, or one pass) leaves the other keys in order."""
    keys = list({job_id: (t, job_id) for t, job_id in keys}.values())  # ids are unique in a table
    index = OrderedIndex()
    for key in keys:
        index.add(key)
    ordered = sorted(keys)
    front = data.draw(st.integers(0, len(ordered)))
    gone = {k[1] for k in ordered[:front]} if data.draw(st.booleans()) else set()
    if ordered:
        gone |= {k[1] for k in data.draw(st.lists(st.sampled_from(ordered)))}
    index.drop(gone)
    assert index.keys == [k for k in ordered if k[1] not in gone]
    assert len(index) == len(ordered) - len(gone)
