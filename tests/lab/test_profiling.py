"""lab/bench/profiling.py: summing py-spy's collapsed stacks (the sampling itself runs in `dtq bench`)."""

from __future__ import annotations

import pytest

from lab.bench.profiling import OTHER, Frame, parse_collapsed

MAIN = "<module> (/v/realsys/__main__.py:5)"
HANDLER = f"{MAIN};run (/v/realsys/server.py:80);SubmitJob (/v/realsys/mono/services.py:176)"
RAW = "\n".join(
    [
        f"{HANDLER};submit (/v/model/scheduler.py:90) 30",
        f"{HANDLER};job_to_pb (/v/realsys/convert.py:40);"
        "SerializeToString (/v/lib/google/protobuf/message.py:9) 10",
        f"{MAIN};_handle_rpc (/v/lib/grpc/_cython/_cygrpc/aio/server.pyx.pxi:600) 50",
        f"{MAIN};select (/usr/lib/python3.11/asyncio/selector_events.py:600) 8",
        "somewhere (/opt/thing.py:1) 2",
        "garbage line without a count",
    ]
)


def test_self_time_goes_to_the_leaf_frames_category() -> None:
    profile = parse_collapsed(RAW.splitlines())
    assert profile.samples == 100
    assert profile.self_by_category == {
        "grpc (Cython + C core)": 50,
        "model/ (the core)": 30,
        "protobuf": 10,
        "asyncio / uvloop": 8,
        OTHER: 2,
    }
    submit = Frame("submit", "/v/model/scheduler.py")
    assert profile.self_by_function[submit] == 30


def test_inclusive_time_counts_a_frame_once_per_stack() -> None:
    profile = parse_collapsed(RAW.splitlines())
    handler = Frame("SubmitJob", "/v/realsys/mono/services.py")
    assert profile.inclusive[handler] == 40
    assert profile.inclusive[Frame("<module>", "/v/realsys/__main__.py")] == 98
    assert profile.share(profile.inclusive[handler]) == pytest.approx(0.4)
    text = "\n".join(profile.lines(top=3))
    assert "100 samples" in text and "50.0%  grpc (Cython + C core)" in text
    assert "40.0%  SubmitJob (mono/services.py)" in text


def test_no_samples_says_so() -> None:
    assert parse_collapsed([]).lines() == ["  no samples"]


def test_relative_paths_and_native_entry_points() -> None:
    raw = [
        "<module> (realsys/__main__.py:5);Runner.run (/usr/lib/python3.11/asyncio/runners.py:118) 6",
        "<module> (realsys/__main__.py:5);Runner.run (/usr/lib/python3.11/asyncio/runners.py:118);"
        "submit (model/scheduler.py:90) 3",
        "_bootstrap (/usr/lib/python3.11/threading.py:995);"
        "Thread.run (/usr/lib/python3.11/threading.py:975) 1",
    ]
    profile = parse_collapsed(raw)
    assert profile.self_by_category == {
        "native under the event loop (uvloop, gRPC Cython/C core, upb)": 6,
        "model/ (the core)": 3,
        "native in other threads (gRPC's poller)": 1,
    }
    assert Frame("submit", "model/scheduler.py").category == "model/ (the core)"
