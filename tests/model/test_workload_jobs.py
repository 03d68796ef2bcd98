"""The workload format's job settings and distributions: mixtures, empirical samples, categoricals,
per-job settings drawn into the trace, their round trips, determinism and seeded golden values."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.errors import InvalidArgument
from model.results.runs import load_workload
from model.workload import (
    Choice,
    ClosedLoop,
    Distribution,
    JobDraw,
    Op,
    OpenLoop,
    Recording,
    Replay,
    WorkloadSpec,
    attempt_uniform,
    closed_loop_scripts,
    open_loop_trace,
    prefill_jobs,
    workload_from_mapping,
    workload_to_mapping,
)

# ---------------------------------------------------------------------------- strategies
positive = st.floats(min_value=1e-4, max_value=10.0, allow_nan=False)
weights = st.floats(min_value=0.01, max_value=100.0, allow_nan=False)


def leaf_distributions() -> st.SearchStrategy[Distribution]:
    return st.one_of(
        st.builds(Distribution, st.just("constant"), st.floats(min_value=0.0, max_value=10.0)),
        st.builds(Distribution, st.just("exponential"), positive),
        st.builds(Distribution, st.just("lognormal"), positive, st.floats(min_value=0.05, max_value=2.0)),
        st.lists(st.floats(min_value=0.0, max_value=10.0), min_size=1, max_size=20).map(
            Distribution.empirical
        ),
    )


distributions = st.recursive(
    leaf_distributions(),
    lambda inner: st.lists(st.tuples(weights, inner), min_size=1, max_size=4).map(
        lambda parts: Distribution.mixture(*parts)
    ),
    max_leaves=8,
)


def categorical(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Choice]:
    return st.lists(st.tuples(values, weights), min_size=1, max_size=5, unique_by=lambda p: p[0]).map(
        lambda pairs: Choice(tuple(pairs))
    )


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
texts = st.one_of(names, categorical(names))
specs = st.builds(
    WorkloadSpec,
    arrival=st.one_of(
        st.builds(OpenLoop, st.floats(min_value=1.0, max_value=500.0), st.integers(1, 2048)),
        st.builds(ClosedLoop, st.integers(1, 8), leaf_distributions(), st.booleans()),
    ),
    job_type=st.one_of(
        st.sampled_from(["sleep", "fail", "echo"]), categorical(st.sampled_from(["sleep", "fail"]))
    ),
    duration=st.one_of(distributions, categorical(st.floats(min_value=0.0, max_value=5.0))),
    payload_bytes=st.one_of(st.integers(0, 1 << 16), categorical(st.integers(0, 1 << 16))),
    run_time=st.floats(min_value=0.5, max_value=5.0),
    warmup=st.floats(min_value=0.0, max_value=2.0),
    seed=st.integers(0, 2**31),
    labels=st.lists(st.tuples(names, texts), max_size=3, unique_by=lambda p: p[0]).map(tuple),
    priority=st.one_of(st.integers(-(2**31), 2**31 - 1), categorical(st.integers(-10, 10))),
    max_attempts=st.one_of(st.integers(0, 100), categorical(st.integers(1, 10))),
    execution_timeout=st.one_of(st.floats(min_value=0.0, max_value=100.0), distributions),
    payload=st.lists(
        st.tuples(
            names.filter(lambda n: n not in ("seconds", "seed", "pad", "cpu_fraction")),
            st.one_of(
                st.booleans(), st.integers(-5, 5), names, categorical(st.integers(0, 3)), distributions
            ),
        ),
        max_size=3,
        unique_by=lambda p: p[0],
    ).map(tuple),
)


# ---------------------------------------------------------------------------- round trip and determinism
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_every_spec_survives_its_mapping_and_json(spec: WorkloadSpec) -> None:
    mapping = workload_to_mapping(spec)
    assert workload_from_mapping(mapping) == spec
    # config.json is JSON: categorical values and weights must come back with their types
    assert workload_from_mapping(json.loads(json.dumps(mapping))) == spec


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_the_same_seed_gives_byte_identical_traces_with_jobs(spec: WorkloadSpec) -> None:
    if isinstance(spec.arrival, OpenLoop):
        spec = WorkloadSpec(**{**_fields(spec), "arrival": OpenLoop(min(spec.arrival.rate, 100.0))})
        a, b = open_loop_trace(spec), open_loop_trace(spec)
        assert a.to_bytes() == b.to_bytes()
        other = WorkloadSpec(**{**_fields(spec), "seed": spec.seed + 1})
        if len(a) > 20 and spec.duration.mean > 0:
            assert open_loop_trace(other).to_bytes() != a.to_bytes()
        traces = [a]
    else:
        traces = closed_loop_scripts(spec, 30)
        assert [t.to_bytes() for t in traces] == [t.to_bytes() for t in closed_loop_scripts(spec, 30)]
    for trace in traces:
        for i in range(min(len(trace), 30)):
            job = trace.job(i)
            assert job.job_type in spec.job_types
            assert job.payload_bytes >= 0 and job.duration >= 0
            if job.job_type == "fail":
                assert job.seed > 0
            assert json.loads(job.payload())["seconds"] == job.duration
            assert len(job.payload()) >= job.payload_bytes


def _fields(spec: WorkloadSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in WorkloadSpec.__dataclass_fields__}


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(weights, st.floats(min_value=0.0, max_value=100.0)),
        min_size=1,
        max_size=5,
        unique_by=lambda p: p[1],
    )
)
def test_mixture_draws_each_component_in_proportion_to_its_weight(parts: list[tuple[float, float]]) -> None:
    mixture = Distribution.mixture(*((w, Distribution("constant", v)) for w, v in parts))
    n = 20_000
    x = mixture.sample(np.random.default_rng(1), n)
    total = sum(w for w, _ in parts)
    assert mixture.mean == pytest.approx(sum(w * v for w, v in parts) / total)
    for w, v in parts:
        p = w / total
        seen = float(np.mean(x == v))
        assert abs(seen - p) < 5 * math.sqrt(p * (1 - p) / n) + 1e-9, (v, seen, p)


def test_a_nested_mixture_keeps_its_components_distributions() -> None:
    short = Distribution("exponential", 0.005)
    long = Distribution("exponential", 0.2)
    d = Distribution.mixture((0.8, short), (0.2, Distribution.mixture((1.0, long))))
    x = d.sample(np.random.default_rng(5), 200_000)
    assert x.mean() == pytest.approx(0.8 * 0.005 + 0.2 * 0.2, rel=0.03)
    assert np.mean(x > 0.05) == pytest.approx(0.2 * math.exp(-0.25) + 0.8 * math.exp(-10), abs=0.01)


def test_empirical_resamples_its_samples() -> None:
    d = Distribution.empirical([0.1, 0.2, 0.2, 0.7])
    x = d.sample(np.random.default_rng(2), 40_000)
    assert set(np.unique(x)) == {0.1, 0.2, 0.7}
    assert np.mean(x == 0.2) == pytest.approx(0.5, abs=0.02)
    assert d.mean == pytest.approx(0.3) and d.upper == 0.7


# ---------------------------------------------------------------------------- seeded golden values
GOLDEN: dict[str, Any] = {
    "arrival": {"kind": "open", "rate": 20},
    "job_type": {"kind": "categorical", "values": {"fail": 0.5, "cpu": 0.5}},
    "duration": {
        "kind": "mixture",
        "components": [{"weight": 0.7, "mean": 0.002}, {"weight": 0.3, "mean": 0.02}],
    },
    "payload_bytes": {"kind": "categorical", "values": {"1024": 0.9, "65536": 0.1}},
    "priority": {"kind": "categorical", "values": {"0": 0.6, "5": 0.3, "9": 0.1}},
    "max_attempts": 4,
    "backoff": {"initial": 0.1, "multiplier": 2},
    "execution_timeout": {"kind": "categorical", "values": {"0.05": 0.5, "1": 0.5}},
    "labels": {"tenant": {"kind": "categorical", "values": {"a": 0.7, "b": 0.3}}, "team": "x"},
    "payload": {"probability": 0.3},
    "cpu_fraction": 0.5,
    "run_time": 2,
    "warmup": 0,
    "seed": 23,
}


def test_seeded_golden_jobs() -> None:
    """The first jobs this seed draws: a change to any stream, or to how a setting is drawn, shows here
    (it changes every trace the real system and the simulator replay)."""
    trace = open_loop_trace(workload_from_mapping(GOLDEN))
    jobs = [trace.job(i) for i in range(4)]
    summary = [
        (
            j.job_type,
            round(j.duration, 6),
            j.payload_bytes,
            j.priority,
            j.execution_timeout,
            dict(j.labels)["tenant"],
        )
        for j in jobs
    ]
    assert len(trace) == 40
    assert summary == [
        ("fail", 0.002, 1024, 0, 0.05, "a"),
        ("cpu", 0.002, 1024, 0, 0.05, "a"),
        ("fail", 0.002, 65536, 0, 1.0, "a"),
        ("cpu", 0.02, 1024, 0, 0.05, "a"),
    ]
    assert jobs[2].seed == 2777076701253843173
    cpu, fail = json.loads(jobs[1].payload()), json.loads(jobs[2].payload())
    assert cpu["cpu_fraction"] == 0.5 and "seed" not in cpu and "probability" in cpu
    assert fail["seed"] == jobs[2].seed and fail["probability"] == 0.3 and "cpu_fraction" not in fail
    spec = jobs[2].spec(jobs[2].payload())
    assert (
        spec.retry.max_attempts == 4
        and spec.retry.initial_backoff == 0.1
        and spec.retry.backoff_multiplier == 2
    )
    assert (
        dict(spec.labels) == {"tenant": "a", "team": "x"}
        and spec.priority == 0
        and len(spec.payload) == 65536
    )
    priorities = [trace.job(i).priority for i in range(len(trace))]
    assert priorities[:12] == [0, 0, 0, 0, 0, 0, 5, 0, 0, 5, 0, 5] and priorities.count(5) == 9


def test_attempt_uniform_is_uniform_and_fixed() -> None:
    assert attempt_uniform(1, 1) == attempt_uniform(1, 1) != attempt_uniform(1, 2)
    assert attempt_uniform(12345, 3) == pytest.approx(0.11954258300911547)
    u = np.array([attempt_uniform(s, a) for s in range(1, 2001) for a in (1, 2, 3)])
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.02 and abs(np.mean(u < 0.3) - 0.3) < 0.02


def test_adding_a_label_leaves_the_other_settings_draws_alone() -> None:
    base = open_loop_trace(workload_from_mapping(GOLDEN))
    more = open_loop_trace(
        workload_from_mapping(
            {
                **GOLDEN,
                "labels": {**GOLDEN["labels"], "zone": {"kind": "categorical", "values": {"x": 1, "y": 1}}},
            }
        )
    )
    assert base.times.tobytes() == more.times.tobytes()
    for i in range(len(base)):
        a, b = base.job(i), more.job(i)
        assert (a.priority, a.job_type, a.duration, a.seed, dict(a.labels)["tenant"]) == (
            b.priority,
            b.job_type,
            b.duration,
            b.seed,
            dict(b.labels)["tenant"],
        )


def test_plain_workloads_send_plain_jobs_and_old_payloads() -> None:
    spec = workload_from_mapping(
        {"arrival": {"kind": "open", "rate": 5}, "duration": {"mean": 0.05}, "payload_bytes": 64}
    )
    job = open_loop_trace(spec).job(0)
    assert job.plain and not spec.has_job_settings
    assert job == JobDraw("sleep", 0.05, payload_bytes=64)
    assert job.payload() == b'{"seconds":0.05,"pad":"' + b"x" * (64 - 25) + b'"}'


def test_prefill_draws_its_jobs_and_states() -> None:
    spec = workload_from_mapping(
        {**GOLDEN, "prefill": {"finished": 1000, "pending": 7, "states": {"succeeded": 0.5, "failed": 0.5}}}
    )
    jobs = prefill_jobs(spec)
    assert len(jobs.finished) == 1000 and len(jobs.pending) == 7 and len(jobs.states) == 1000
    assert set(jobs.states) == {"succeeded", "failed"} and 400 < jobs.states.count("failed") < 600
    assert prefill_jobs(spec) == jobs
    assert workload_from_mapping(workload_to_mapping(spec)) == spec


def test_a_replay_keeps_the_recorded_requests() -> None:
    recording = Recording(
        path="/runs/x",
        times=(0.5, 0.1, 0.3, 9.0),
        ops=(int(Op.STATUS), int(Op.SUBMIT), int(Op.SUBMIT), int(Op.SUBMIT)),
        durations=(0.0, 0.25, math.nan, 0.1),
        targets=(0.75, 0.0, 0.0, 0.0),
        run_time=2.0,
        warmup=0.5,
    )
    spec = WorkloadSpec(
        Replay(recording, speed=2.0), duration=Distribution("constant", 0.125), run_time=2.0, warmup=0.1
    )
    trace = open_loop_trace(spec)
    assert trace.times.tolist() == [0.05, 0.15, 0.25]  # sorted, at twice the speed, cut at 2.1 s
    assert trace.ops.tolist() == [Op.SUBMIT, Op.SUBMIT, Op.STATUS]
    assert trace.durations.tolist() == [0.25, 0.125, 0.0]  # recorded, else drawn from the workload
    assert trace.targets.tolist()[2] == 0.75
    assert spec.offered_rate() == pytest.approx(2 / 2.0)  # two requests in the window [0.1, 2.1)


# ---------------------------------------------------------------------------- errors
def _open(**extra: Any) -> dict[str, Any]:
    return {"arrival": {"kind": "open", "rate": 10}, **extra}


@pytest.mark.parametrize(
    ("mapping", "path", "words"),
    [
        (_open(duration={"kind": "mixture"}), "workload.duration.components", "non-empty list"),
        (
            _open(duration={"kind": "mixture", "components": [{"mean": 1}]}),
            "workload.duration.components[0]",
            "weight",
        ),
        (
            _open(duration={"kind": "mixture", "components": [{"weight": 1, "kind": "normal"}]}),
            "workload.duration.components[0]",
            "allowed: categorical, constant, empirical, exponential, lognormal, mixture",
        ),
        (
            _open(duration={"kind": "mixture", "components": [{"weight": -1, "mean": 1}]}),
            "workload.duration",
            "weights",
        ),
        (_open(duration={"kind": "empirical"}), "workload.duration", "samples"),
        (_open(duration={"kind": "empirical", "samples": [1, -2]}), "workload.duration", ">= 0"),
        (_open(duration={"kind": "empirical", "file": "x.txt"}), "workload.duration.file", "load_workload"),
        (
            _open(duration={"kind": "exponential", "mean": 1, "sigma": 2}),
            "workload.duration.sigma",
            "unknown key (allowed: kind, mean)",
        ),
        (_open(priority=1.5), "workload.priority", "integer"),
        (_open(priority={"kind": "exponential", "mean": 1}), "workload.priority", "categorical"),
        (
            _open(priority={"kind": "categorical", "values": {"high": 1}}),
            "workload.priority.values",
            "integers",
        ),
        (_open(max_attempts=-1), "workload.max_attempts", "within [0"),
        (_open(backoff={"initial": 1, "multiplier": 0.5}), "workload.backoff", "multiplier"),
        (_open(backoff={"initial": 2, "max": 1}), "workload.backoff", "max"),
        (
            _open(backoff={"start": 1}),
            "workload.backoff.start",
            "unknown key (allowed: initial, max, multiplier)",
        ),
        (_open(execution_timeout="1s"), "workload.execution_timeout", "number"),
        (_open(job_type="cpu", cpu_fraction=1.5), "workload.cpu_fraction", "within [0, 1]"),
        (
            _open(job_type="cpu", cpu_fraction={"kind": "exponential", "mean": 0.5}),
            "workload.cpu_fraction",
            "within [0, 1]",
        ),
        (_open(cpu_fraction=0.5), "workload", "cpu_fraction applies to 'cpu' jobs"),
        (_open(payload={"seconds": 1}), "workload.payload.seconds", "reserved"),
        (_open(payload=[1]), "workload.payload", "mapping"),
        (_open(labels={"t": {"kind": "categorical", "values": {}}}), "workload.labels.t", "at least one"),
        (
            _open(job_type={"kind": "categorical", "values": [["a", 1], ["a", 2]]}),
            "workload.job_type",
            "twice",
        ),
        (_open(prefill={"finished": -1}), "workload.prefill", "prefill counts"),
        (
            _open(prefill={"finished": 1, "states": {"lost": 1}}),
            "workload.prefill.states.lost",
            "unknown key",
        ),
        ({"arrival": {"kind": "replay"}}, "workload.arrival.run", "required"),
        ({"arrival": {"kind": "replay", "run": "data/runs/x"}}, "workload.arrival.run", "load_workload"),
    ],
)
def test_errors_name_the_bad_key_and_the_allowed_values(mapping: Any, path: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        workload_from_mapping(mapping)
    message = info.value.message
    assert message.startswith(path + ":") or message.startswith(path + "."), message
    assert words in message, message
    assert "\n" not in message


# ---------------------------------------------------------------------------- the held-out workloads
HOLDOUT = Path(__file__).resolve().parents[2] / "data" / "workloads" / "holdout"


def test_the_held_out_workloads_q1_to_q3_are_expressible() -> None:
    """Parsed only: holdout.md keeps them out of everything tuned (never run here)."""
    q1 = load_workload(HOLDOUT / "q1-flaky-retry.yaml")
    assert (q1.job_type, dict(q1.payload), q1.max_attempts) == ("fail", {"probability": 0.3}, 4)
    assert (q1.backoff.initial, q1.backoff.multiplier, q1.seed) == (0.1, 2.0, 23)
    q2 = load_workload(HOLDOUT / "q2-three-priorities.yaml")
    assert isinstance(q2.priority, Choice) and dict(q2.priority.values) == {0: 0.6, 5: 0.3, 9: 0.1}
    assert q2.duration == Distribution("exponential", 0.03)
    q3 = load_workload(HOLDOUT / "q3-timeouts.yaml")
    assert (q3.execution_timeout, q3.max_attempts) == (0.05, 2)
    assert q3.duration == Distribution("lognormal", 0.04, 0.8)
    for spec in (q1, q2, q3):
        assert (spec.run_time, spec.warmup, spec.seed, spec.payload_bytes) == (4.0, 1.0, 23, 0)
