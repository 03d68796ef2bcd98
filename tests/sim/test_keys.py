"""What-ifs cannot silently do nothing: every override key has one meaning (sim/keys.py), each class
of override moves the prediction the way it should, and wrong keys, values and keys a design never
reads are errors naming the nearest valid keys. The key registry matches what the designs charge."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sim
from model.errors import InvalidArgument
from sim.api import PlaceholderWarning
from sim.cpu import CostModel
from sim.dist import Dist
from sim.hostscale import HostScale
from sim.keys import DIST_FIELDS, KEYS, PER_ITEM_METHODS, SERVICE_METHODS, every_key
from sim.params import SimParams, load_params
from tests.sim.conftest import submits

SIM_DIR = Path(sim.__file__).resolve().parent
CAL = load_params("local")


def summary(design: str, params: SimParams, wl: Any = None) -> dict[str, Any]:
    return sim.run(sim.SimConfig(design, wl or submits(), params)).summary  # type: ignore[arg-type]


def submit_p50(design: str, params: SimParams) -> float:
    return float(summary(design, params)["latency_ms"]["submit"]["p50"])


# ---------------------------------------------------------------------------- distributions
def test_distribution_operations_mean_what_they_say() -> None:
    rng = np.random.default_rng(3)
    emp = Dist.of({"samples": [1e-4, 2e-4, 6e-4]})
    assert emp.scaled(2).samples == pytest.approx((2e-4, 4e-4, 1.2e-3))
    assert emp.shifted(1e-4).samples == pytest.approx((2e-4, 3e-4, 7e-4))
    assert emp.with_mean(6e-4).samples == pytest.approx((2e-4, 4e-4, 1.2e-3))  # the shape kept
    assert Dist("constant", 1e-3).with_mean(2e-3) == Dist("constant", 2e-3)
    logn = Dist("lognormal", 1e-3, 0.5)
    for dist, mean in ((logn.shifted(5e-4), 1.5e-3), (Dist("exponential", 2e-3).shifted(1e-3), 3e-3)):
        drawn = dist.sample(rng, 200_000)
        assert drawn.min() >= dist.shift and abs(drawn.mean() / mean - 1) < 0.02
    wide = logn.with_sigma(1.5).sample(rng, 200_000)
    narrow = logn.sample(rng, 200_000)
    assert abs(wide.mean() / 1e-3 - 1) < 0.05 and np.percentile(wide, 99) > 2 * np.percentile(narrow, 99)
    assert Dist.of("exponential(0.002)") == Dist("exponential", 0.002)
    assert Dist.of("lognormal(0.002, 0.5)") == Dist("lognormal", 0.002, 0.5)
    assert Dist.of(" constant( 1e-3 ) ") == Dist("constant", 1e-3)
    again = Dist.of(Dist("exponential", 3e-3, shift=1e-3).to_mapping())
    assert again == Dist("exponential", 3e-3, shift=1e-3)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Dist.of({"samples": [1e-4], "mean": 1.0}), "mean is its samples'"),
        (lambda: Dist.of({"samples": [1e-4, 2e-4]}).shifted(-2e-4), "smallest sample"),
        (lambda: Dist("exponential", 1e-3).shifted(-1e-4), "scale it instead"),
        (lambda: Dist.of({"samples": [1e-4]}).with_sigma(1.0), "sigma belongs to lognormal"),
        (lambda: Dist.of({"samples": [0.0, 0.0]}).with_mean(1e-3), "no shape to rescale"),
        (lambda: Dist.of("weibull(1)"), "expected a number"),
        (lambda: Dist.of("lognormal(0.001)"), "takes 2 numbers"),
        (lambda: Dist.of({"kind": "exponential", "mean": 1e-3, "sigmaa": 1}), "unknown keys"),
        (lambda: Dist("constant", 1e-3).scaled(0), "finite and > 0"),
    ],
)
def test_distribution_operations_refuse_what_has_no_meaning(make: Any, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        make()


# ---------------------------------------------------------------------------- each class of override
def test_what_ifs_on_a_measured_distribution_change_the_prediction() -> None:
    """The bug this module fixes: `.mean` on an empirical (calibrated) distribution was dropped."""
    base = submit_p50("mono", CAL)
    assert CAL.service_dist("node", "SubmitJob").kind == "empirical"
    doubled = submit_p50("mono", CAL.with_overrides({"service.node.SubmitJob.scale": 2}))
    slower = submit_p50("mono", CAL.with_overrides({"service.node.SubmitJob.mean": 0.005}))
    shifted = submit_p50("mono", CAL.with_overrides({"service.node.SubmitJob.shift": 0.002}))
    far = submit_p50("mono", CAL.with_overrides({"network.mean": 0.01}))
    assert base < doubled < slower  # mean 5 ms is ~7x the measured ~0.7 ms
    assert slower > base + 3.0
    assert shifted == pytest.approx(base + 2.0, abs=0.6)  # every sample plus 2 ms
    assert far > base + 5.0  # two hops of mean 10 ms


def test_parametric_replacements_and_sigma_change_the_prediction() -> None:
    base = SimParams.ideal()
    assert submit_p50("mono", base) == pytest.approx(0.0, abs=0.002)
    hops = submit_p50("mono", base.with_overrides({"network": "constant(0.001)"}))
    assert hops == pytest.approx(2.0, abs=0.01)  # load generator -> node -> load generator
    exp = summary("mono", base.with_overrides({"network": "exponential(0.001)"}))["latency_ms"]["submit"]
    assert 1.2 < exp["p50"] < 2.0 and exp["p99"] > 5.0  # a sum of two exponentials of 1 ms
    wl = submits(arrival={"kind": "open", "rate": 300})
    narrow = summary("mono", CAL.with_overrides({"network": "lognormal(0.0003, 0.2)"}), wl)
    wide = summary(
        "mono", CAL.with_overrides({"network": "lognormal(0.0003, 0.2)", "network.sigma": 1.5}), wl
    )
    assert wide["latency_ms"]["submit"]["p99"] > narrow["latency_ms"]["submit"]["p99"]


def test_settings_move_the_prediction_the_right_way() -> None:
    closed = submits(
        arrival={"kind": "closed", "clients": 24, "wait_for_completion": True},
        duration={"kind": "constant", "mean": 0.05},
    )
    done = {
        s: summary("micro", CAL.with_overrides({"slots": s}), closed)["throughput"]["completed_per_s"]
        for s in (6, 12)
    }
    assert done[12] > 1.6 * done[6]  # saturated on slots: 6 x 20/s vs 12 x 20/s
    per_row = submit_p50("micro", CAL.with_overrides({"commit_per_row": 0.002}))
    assert per_row > submit_p50("micro", CAL) + 1.5  # CreateJob commits one row
    listing = submits(mix={"submit": 0.5, "list": 0.5})
    slow_list = CAL.with_overrides({"per_item.node.ListLocalJobs": 1e-4})
    quick, slow = (summary("mono", p, listing)["latency_ms"]["list"]["p50"] for p in (CAL, slow_list))
    assert slow > quick + 1.0  # ~100 jobs per page x 100 us


def test_core_and_bool_settings_change_the_run() -> None:
    capped = summary(
        "mono",
        CAL.with_overrides({"core.max_pending": 1}),
        submits(duration={"kind": "constant", "mean": 0.5}),
    )
    assert capped["errors"].get("RESOURCE_EXHAUSTED", 0) > 0  # one pending job per node, then refused
    assert not summary("mono", CAL)["errors"]
    tracked = sim.run(sim.SimConfig("mono", submits(), CAL))
    untracked = sim.run(sim.SimConfig("mono", submits(), CAL.with_overrides({"track_jobs": False})))
    assert untracked.stats["counters"] != tracked.stats["counters"]
    assert sum(untracked.stats["utilisation"].values()) < sum(tracked.stats["utilisation"].values())


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"netwrk": 1e-3}, "nearest: network"),
        ({"service.node.Submit": 1e-3}, "nearest: service.node.SubmitJob"),
        ({"service.nodes.SubmitJob": 1e-3}, "unknown role 'nodes'"),
        ({"core.lease": 5}, "nearest: core.lease_duration"),
        ({"per_item.node.Nope": 1e-5}, "unknown simulator parameter"),
        ({"cores": 2.5}, "expected an integer"),
        ({"track_jobs": "yes"}, "expected true or false"),
        ({"fetch_wait": "long"}, "expected a finite number"),
        ({"network": [1, 2]}, "expected a number or a distribution"),
        ({"cores.scale": 2}, "cores is a int"),
        ({"per_item.node.fetch.scale": 2}, "is a float"),
        ({"network.samples": [1e-4]}, "replace the whole distribution"),
        ({"checkpoint_interval": 1.0}, "checkpoints are off"),
        ({"wakeup_idle": [[0.001, 1.0]]}, "wake-ups cost nothing"),
        ({"procs_per_host": 2}, "one host"),
    ],
)
def test_bad_overrides_are_errors_naming_the_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as info:
        SimParams().with_overrides(overrides)
    assert next(iter(overrides)).split(".")[0] in info.value.message


def test_a_key_the_design_never_reads_is_refused() -> None:
    wl = submits()
    with pytest.raises(InvalidArgument, match="nodes has no effect on micro"):
        sim.SimConfig("micro", wl, SimParams().with_overrides({"nodes": 3}))
    with pytest.raises(InvalidArgument, match="no effect on mono"):
        sim.SimConfig("mono", wl, SimParams().with_overrides({"service.job.CreateJob.scale": 2}))
    sim.SimConfig("mono", wl, SimParams().with_overrides({"nodes": 3}))  # Design B reads it


def test_every_key_can_be_named() -> None:
    names = every_key()
    assert len(names) == len(set(names))
    for name in DIST_FIELDS:
        assert {f"{name}.scale", f"{name}.shift", f"{name}.mean", f"{name}.sigma"} <= set(names)
    assert all(
        k in KEYS for k in ("cores", "core.lease_duration", "service.node.*", "per_item.job.LeaseJobs")
    )


# ---------------------------------------------------------------------------- placeholders
def test_runs_on_placeholders_warn_naming_them() -> None:
    with pytest.warns(PlaceholderWarning, match="service.node.SubmitJob"):
        summary("mono", SimParams())
    assert "service.node.SubmitJob" not in CAL.placeholder_keys("mono")
    assert "service.node.timer" in CAL.placeholder_keys("mono")  # the calibration does not measure it
    assert "service.node.timer" not in CAL.with_overrides({"service.node.timer": 2e-5}).placeholder_keys()
    assert SimParams.ideal().placeholder_keys() == []


def test_placeholder_marks_survive_a_host_scale() -> None:
    moved = CAL.on_host(HostScale(cpu=1.3))
    assert moved.placeholder_keys() == CAL.placeholder_keys()


# ---------------------------------------------------------------------------- the registry
def test_the_registry_covers_every_method_the_designs_charge(monkeypatch: pytest.MonkeyPatch) -> None:
    charged: set[tuple[str, str]] = set()
    items: set[str] = set()
    original = CostModel.service_sampler

    def spy(self: CostModel, proc: Any, method: str) -> Any:
        charged.add((proc.role, method))
        return original(self, proc, method)

    monkeypatch.setattr(CostModel, "service_sampler", spy)

    def item_cost(self: SimParams, role: str, method: str) -> float:
        items.add(f"{role}.{method}")
        return 0.0

    monkeypatch.setattr(SimParams, "item_cost", item_cost)
    mix = {"submit": 0.4, "status": 0.15, "result": 0.15, "cancel": 0.15, "list": 0.15}
    wl = submits(
        mix=mix, duration={"kind": "exponential", "mean": 0.05}, arrival={"kind": "open", "rate": 200}
    )
    for design in ("micro", "mono"):
        for params in (
            CAL.with_overrides({"checkpoint": 1e-5}),
            CAL.with_overrides({"nodes": 3, "slots": 12}),
        ):
            if design == "micro" and params.nodes != CAL.nodes:
                continue
            sim.run(sim.SimConfig(design, wl, params))
        sim.run(
            sim.SimConfig(
                design,
                wl,
                CAL,
                faults=(
                    sim.Fault(
                        at=1.0,
                        target="worker" if design == "micro" else "n1",
                        action="kill_worker",
                        restart_after=0.3,
                    ),
                ),
            )
        )
    assert charged, "the spy saw nothing"
    unknown = {(r, m) for r, m in charged if m not in SERVICE_METHODS.get(r, ())}
    assert not unknown, f"charged but not in sim/keys.py SERVICE_METHODS: {sorted(unknown)}"
    per_item = {f"{r}.{m}" for r, ms in PER_ITEM_METHODS.items() for m in ms}
    assert items <= per_item, sorted(items - per_item)


def test_every_method_named_in_the_code_is_in_the_registry() -> None:
    """String literals passed to `.cost(...)` and to the helpers that charge a method by name."""
    callers = {"cost", "look", "_gw", "_job_look", "_read", "submit_action", "reserve", "report_here"}
    named: set[str] = set()
    for path in ("mono.py", "micro.py", "service.py", "worker.py"):
        for node in ast.walk(ast.parse((SIM_DIR / path).read_text())):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in callers and isinstance(node.args[0].value, str):
                    named.add(node.args[0].value)
    assert len(named) > 30
    registry = {m for ms in SERVICE_METHODS.values() for m in ms}
    assert named <= registry, sorted(named - registry)
