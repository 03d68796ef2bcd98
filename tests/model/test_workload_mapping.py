"""Workload mappings (the form of workload files and of config.json's "workload"): round trips and errors."""

from __future__ import annotations

from typing import Any

import pytest

from model.errors import InvalidArgument
from model.workload import (
    ClosedLoop,
    Distribution,
    OpenLoop,
    RequestMix,
    WorkloadSpec,
    workload_from_mapping,
    workload_to_mapping,
)

SPECS = [
    WorkloadSpec(OpenLoop(200.0)),
    WorkloadSpec(
        OpenLoop(rate=123.5, max_in_flight=7),
        mix=RequestMix(submit=0.6, status=0.2, result=0.1, list=0.05, cancel=0.05),
        job_type="cpu",
        duration=Distribution("lognormal", 0.02, 0.75),
        payload_bytes=512,
        run_time=3.5,
        warmup=0.0,
        seed=99,
        labels=(("team", "a"), ("exp", "b")),
    ),
    WorkloadSpec(ClosedLoop(16, Distribution("exponential", 0.01)), duration=Distribution("constant", 0.1)),
    WorkloadSpec(ClosedLoop(1)),
]


@pytest.mark.parametrize("spec", SPECS)
def test_round_trip(spec: WorkloadSpec) -> None:
    mapping = workload_to_mapping(spec)
    assert workload_from_mapping(mapping) == spec
    assert workload_to_mapping(workload_from_mapping(mapping)) == mapping


def test_the_documented_example() -> None:
    spec = workload_from_mapping(
        {
            "arrival": {"kind": "open", "rate": 200, "max_in_flight": 256},
            "mix": {"submit": 0.6, "status": 0.2, "result": 0.2},
            "job_type": "sleep",
            "duration": {"kind": "exponential", "mean": 0.05},
            "payload_bytes": 64,
            "run_time": 10,
            "warmup": 2,
            "seed": 1,
        }
    )
    assert spec == WorkloadSpec(
        OpenLoop(200.0, 256),
        RequestMix(submit=0.6, status=0.2, result=0.2),
        "sleep",
        Distribution("exponential", 0.05),
        64,
        10.0,
        2.0,
        1,
    )
    closed = workload_from_mapping({"arrival": {"kind": "closed", "clients": 16, "think_time": {"mean": 0}}})
    assert closed.arrival == ClosedLoop(16, Distribution("constant", 0.0))
    assert closed.mix == RequestMix()  # defaults when left out


def test_mix_fractions_left_out_are_zero() -> None:
    spec = workload_from_mapping(_open(mix={"submit": 0.5, "list": 0.5}))
    assert spec.mix == RequestMix(submit=0.5, list=0.5)


def _open(**extra: Any) -> dict[str, Any]:
    return {"arrival": {"kind": "open", "rate": 10}, **extra}


@pytest.mark.parametrize(
    ("mapping", "path", "words"),
    [
        ({}, "workload.arrival", "required"),
        ([], "workload", "mapping"),
        (_open(rate=5), "workload.rate", "unknown key"),
        ({"arrival": {"kind": "open", "rat": 5}}, "workload.arrival.rat", "unknown key"),
        ({"arrival": {"kind": "open"}}, "workload.arrival.rate", "required"),
        (
            {"arrival": {"kind": "poisson", "rate": 1}},
            "workload.arrival.kind",
            "'open', 'closed' or 'replay'",
        ),
        ({"arrival": {"kind": "open", "rate": "fast"}}, "workload.arrival.rate", "number"),
        ({"arrival": {"kind": "open", "rate": True}}, "workload.arrival.rate", "number"),
        ({"arrival": {"kind": "open", "rate": 0}}, "workload.arrival", "rate must be > 0"),
        (
            {"arrival": {"kind": "open", "rate": 1, "max_in_flight": 2.5}},
            "workload.arrival.max_in_flight",
            "int",
        ),
        ({"arrival": {"kind": "closed", "clients": 0}}, "workload.arrival", ">= 1 client"),
        ({"arrival": {"kind": "closed", "clients": 2, "rate": 1}}, "workload.arrival.rate", "unknown"),
        (
            {"arrival": {"kind": "closed", "clients": 2, "think_time": {"kind": "exponential"}}},
            "workload.arrival.think_time",
            "mean > 0",
        ),
        (_open(mix={"submit": 0.5}), "workload.mix", "sum to 1"),
        (_open(mix={"status": 1.0}), "workload.mix", "needs submits"),
        (_open(mix={"submit": 1.0, "delete": 0.0}), "workload.mix.delete", "unknown key"),
        (_open(duration={"kind": "weibull", "mean": 1}), "workload.duration", "unknown distribution"),
        (_open(duration={"kind": "lognormal", "mean": 1}), "workload.duration", "sigma"),
        (_open(duration=0.5), "workload.duration", "mapping"),
        (_open(job_type=3), "workload.job_type", "string"),
        (_open(payload_bytes=-1), "workload", "payload_bytes"),
        (_open(payload_bytes="64"), "workload.payload_bytes", "integer"),
        (_open(run_time=0), "workload", "run_time"),
        (_open(warmup=float("inf")), "workload", "finite"),
        (_open(seed=1.0), "workload.seed", "integer"),
        (_open(labels={"a": 1}), "workload.labels.a", "strings"),
    ],
)
def test_errors_name_the_bad_key(mapping: Any, path: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        workload_from_mapping(mapping)
    assert info.value.message.startswith(path + ":"), info.value.message
    assert words in info.value.message
