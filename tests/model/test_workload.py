"""Workload traces: determinism, independent streams, and the statistics of the arrival process."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats  # type: ignore[import-untyped]

from model.errors import InvalidArgument
from model.results.schema import JOB_FIELDS, REQUEST_FIELDS, JobRecord, RequestRecord
from model.states import JobState
from model.workload import (
    ClosedLoop,
    Distribution,
    Op,
    OpenLoop,
    RequestMix,
    Stream,
    Trace,
    WorkloadSpec,
    closed_loop_scripts,
    open_loop_trace,
    streams,
)

MIX = RequestMix(submit=0.5, status=0.2, result=0.1, list=0.1, cancel=0.1)


def open_spec(**kwargs: object) -> WorkloadSpec:
    base: dict[str, object] = {
        "arrival": OpenLoop(rate=50.0),
        "mix": MIX,
        "duration": Distribution("exponential", 0.2),
        "run_time": 20.0,
        "warmup": 2.0,
        "seed": 11,
    }
    base.update(kwargs)
    return WorkloadSpec(**base)  # type: ignore[arg-type]


def as_bytes(trace: Trace) -> tuple[bytes, bytes, bytes, bytes]:
    return (trace.times.tobytes(), trace.ops.tobytes(), trace.durations.tobytes(), trace.targets.tobytes())


# ---------------------------------------------------------------------------- determinism
def test_same_seed_gives_byte_identical_traces() -> None:
    a, b = open_loop_trace(open_spec()), open_loop_trace(open_spec())
    assert len(a) > 0
    assert as_bytes(a) == as_bytes(b)
    assert a.times.dtype == np.float64 and a.ops.dtype == np.int8
    assert a.durations.dtype == np.float64 and a.targets.dtype == np.float64


def test_different_seeds_give_different_traces() -> None:
    a, b = open_loop_trace(open_spec(seed=1)), open_loop_trace(open_spec(seed=2))
    assert a.times[:10].tobytes() != b.times[:10].tobytes()


def test_streams_are_independent_per_component() -> None:
    s1, s2 = streams(5), streams(5)
    assert set(s1) == set(Stream)
    draws = {s: s1[s].random(4).tobytes() for s in Stream}
    assert len(set(draws.values())) == len(Stream)  # no two components share a stream
    assert draws == {s: s2[s].random(4).tobytes() for s in Stream}


def test_changing_the_mix_does_not_move_arrivals() -> None:
    base = open_loop_trace(open_spec())
    other = open_loop_trace(open_spec(mix=RequestMix(submit=0.9, cancel=0.1)))
    assert base.times.tobytes() == other.times.tobytes()
    assert base.targets.tobytes() == other.targets.tobytes()
    assert base.ops.tobytes() != other.ops.tobytes()


def test_changing_durations_does_not_move_arrivals_or_the_mix() -> None:
    base = open_loop_trace(open_spec())
    other = open_loop_trace(open_spec(duration=Distribution("lognormal", 3.0, 0.5)))
    assert base.times.tobytes() == other.times.tobytes()
    assert base.ops.tobytes() == other.ops.tobytes()
    assert base.targets.tobytes() == other.targets.tobytes()
    assert base.durations.tobytes() != other.durations.tobytes()


def test_a_longer_run_extends_the_same_arrivals() -> None:
    short = open_loop_trace(open_spec(run_time=5.0))
    long = open_loop_trace(open_spec(run_time=50.0))
    n = len(short)
    assert n > 0 and len(long) > n
    np.testing.assert_array_equal(long.times[:n], short.times)


def test_trace_shape() -> None:
    trace = open_loop_trace(open_spec())
    horizon = open_spec().total_time
    assert len(trace.times) == len(trace.ops) == len(trace.durations) == len(trace.targets) == len(trace)
    assert np.all(np.diff(trace.times) > 0)
    assert trace.times[0] > 0 and trace.times[-1] <= horizon
    assert trace.ops[0] == Op.SUBMIT
    assert set(np.unique(trace.ops)) <= {int(op) for op in Op}
    assert np.all(trace.durations[trace.ops != Op.SUBMIT] == 0.0)
    assert np.all(trace.durations[trace.ops == Op.SUBMIT] > 0.0)
    assert np.all((trace.targets >= 0) & (trace.targets < 1))


def test_mix_proportions() -> None:
    trace = open_loop_trace(open_spec(arrival=OpenLoop(rate=500.0), run_time=40.0))
    counts = np.bincount(trace.ops, minlength=len(Op))
    expected = np.asarray(MIX.weights()) * len(trace)
    assert stats.chisquare(counts, expected).pvalue > 0.01


# ---------------------------------------------------------------------------- Poisson arrivals
RATE = 200.0
LONG = open_spec(arrival=OpenLoop(rate=RATE), run_time=100.0, warmup=0.0, seed=2024)


@pytest.fixture(scope="module")
def gaps() -> npt.NDArray[np.float64]:
    trace = open_loop_trace(LONG)
    return np.diff(np.concatenate([[0.0], trace.times]))


def test_arrival_count_matches_rate(gaps: npt.NDArray[np.float64]) -> None:
    expected = RATE * LONG.total_time
    assert abs(len(gaps) - expected) < 4 * math.sqrt(expected)


def test_mean_gap_within_confidence_interval(gaps: npt.NDArray[np.float64]) -> None:
    mean, n = 1.0 / RATE, len(gaps)
    se = gaps.std(ddof=1) / math.sqrt(n)
    assert abs(gaps.mean() - mean) < 4 * se
    # an exponential's standard deviation equals its mean
    assert abs(gaps.std(ddof=1) - mean) < 0.05 * mean


def test_gaps_are_exponential_ks(gaps: npt.NDArray[np.float64]) -> None:
    result = stats.kstest(gaps, "expon", args=(0, 1.0 / RATE))
    assert result.pvalue > 0.01, result


def test_gaps_are_not_capped(gaps: npt.NDArray[np.float64]) -> None:
    mean = 1.0 / RATE
    assert gaps.max() > 3 * mean  # a generator capping at 3x the mean (vidur) fails this
    assert gaps.max() > 8 * mean  # with ~20000 gaps the largest is about ln(20000) ~ 10x the mean
    # the tail has the exponential's weight: P(gap > 3 mean) = e^-3
    share = float(np.mean(gaps > 3 * mean))
    p = math.exp(-3)
    assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / len(gaps))


def test_open_loop_needs_open_loop_arrivals() -> None:
    with pytest.raises(InvalidArgument):
        open_loop_trace(open_spec(arrival=ClosedLoop(clients=2)))


def test_very_low_rate_gives_a_valid_trace() -> None:
    trace = open_loop_trace(open_spec(arrival=OpenLoop(rate=0.01), run_time=1.0, warmup=0.0))
    assert len(trace) == 0 or trace.times[-1] <= 1.0
    assert len(trace.ops) == len(trace.times)


# ---------------------------------------------------------------------------- distributions
def test_lognormal_mean_is_right() -> None:
    rng = np.random.default_rng(3)
    dist = Distribution("lognormal", mean=2.0, sigma=1.0)
    x = dist.sample(rng, 400_000)
    se = x.std(ddof=1) / math.sqrt(len(x))
    assert abs(x.mean() - 2.0) < 4 * se
    # the parameterisation: median exp(mu) with mu = ln(mean) - sigma^2 / 2
    assert np.median(x) == pytest.approx(2.0 * math.exp(-0.5), rel=0.01)
    assert stats.kstest(np.log(x), "norm", args=(math.log(2.0) - 0.5, 1.0)).pvalue > 0.01


def test_exponential_and_constant() -> None:
    rng = np.random.default_rng(4)
    x = Distribution("exponential", 0.5).sample(rng, 200_000)
    assert abs(x.mean() - 0.5) < 4 * 0.5 / math.sqrt(len(x))
    assert np.all(Distribution("constant", 1.5).sample(rng, 5) == 1.5)
    assert np.all(Distribution().sample(rng, 3) == 0.0)
    assert np.all(Distribution("lognormal", 0.0, 1.0).sample(rng, 3) == 0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "uniform", "mean": 1.0},
        {"kind": "constant", "mean": -1.0},
        {"kind": "constant", "mean": math.inf},
        {"kind": "constant", "mean": math.nan},
        {"kind": "exponential", "mean": 0.0},
        {"kind": "lognormal", "mean": 1.0, "sigma": 0.0},
        {"kind": "lognormal", "mean": 1.0, "sigma": math.nan},
        {"kind": "lognormal", "mean": 1.0, "sigma": math.inf},
    ],
)
def test_distribution_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        Distribution(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "weights",
    [
        {"submit": 0.5},
        {"submit": 0.5, "status": 0.6},
        {"submit": 1.1, "status": -0.1},
        {"submit": 0.0, "status": 1.0},
        {"submit": math.nan},
        {"submit": math.inf, "status": -math.inf},
    ],
)
def test_request_mix_validation(weights: dict[str, float]) -> None:
    with pytest.raises(InvalidArgument):
        RequestMix(**weights)


def test_request_mix_accepts_valid_fractions() -> None:
    assert RequestMix().weights() == (1.0, 0.0, 0.0, 0.0, 0.0)
    assert sum(RequestMix(0.1, 0.2, 0.3, 0.2, 0.2).weights()) == pytest.approx(1.0)
    RequestMix(submit=1 / 3, status=1 / 3, result=1 / 3)  # rounding within tolerance


def test_arrival_and_spec_validation() -> None:
    for bad_rate in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(InvalidArgument):
            OpenLoop(rate=bad_rate)
    with pytest.raises(InvalidArgument):
        OpenLoop(rate=1.0, max_in_flight=0)
    with pytest.raises(InvalidArgument):
        ClosedLoop(clients=0)
    for kwargs in ({"run_time": 0.0}, {"warmup": -1.0}, {"payload_bytes": -1}, {"seed": -1}):
        with pytest.raises(InvalidArgument):
            open_spec(**kwargs)
    assert open_spec(run_time=3.0, warmup=1.5).total_time == 4.5


# ---------------------------------------------------------------------------- closed loop
def closed_spec(clients: int = 3, seed: int = 5) -> WorkloadSpec:
    return WorkloadSpec(
        arrival=ClosedLoop(clients=clients, think_time=Distribution("exponential", 0.1)),
        mix=MIX,
        duration=Distribution("lognormal", 0.05, 0.5),
        seed=seed,
    )


def test_closed_loop_scripts_are_deterministic() -> None:
    a, b = closed_loop_scripts(closed_spec(), 100), closed_loop_scripts(closed_spec(), 100)
    assert len(a) == 3
    assert [as_bytes(t) for t in a] == [as_bytes(t) for t in b]
    for script in a:
        assert len(script) == 100 and script.ops[0] == Op.SUBMIT
        assert np.all(script.times > 0)  # think times
    # clients differ from one another
    assert len({t.times.tobytes() for t in a}) == 3
    # and from another seed
    other = closed_loop_scripts(closed_spec(seed=6), 100)
    assert as_bytes(other[0]) != as_bytes(a[0])


def test_adding_clients_keeps_existing_scripts() -> None:
    three = closed_loop_scripts(closed_spec(clients=3), 50)
    five = closed_loop_scripts(closed_spec(clients=5), 50)
    assert [as_bytes(t) for t in five[:3]] == [as_bytes(t) for t in three]


def test_closed_loop_scripts_do_not_share_the_open_loop_streams() -> None:
    spec = closed_spec(clients=1)
    script = closed_loop_scripts(spec, 20)[0]
    top = streams(spec.seed)
    assert script.targets.tobytes() != top[Stream.TARGETS].random(20).tobytes()


def test_closed_loop_needs_closed_loop_arrivals() -> None:
    with pytest.raises(InvalidArgument):
        closed_loop_scripts(open_spec(), 10)


# ---------------------------------------------------------------------------- records
def test_records() -> None:
    request = RequestRecord(0, Op.SUBMIT, intended_time=1.0, start_time=1.5, end_time=2.0, status="OK")
    assert request.latency == 1.0  # from the intended time: no coordinated omission
    assert request.service_time == 0.5
    job = JobRecord("n-1-1", 1.0, 1.2, 4.0, JobState.SUCCEEDED, 1, 2.0)
    assert job.completion_time == 3.0
    assert REQUEST_FIELDS[:3] == ("client", "op", "intended_time") and "job_id" in REQUEST_FIELDS
    assert JOB_FIELDS[0] == "job_id" and "final_state" in JOB_FIELDS
