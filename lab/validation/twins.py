"""The simulated twins: every real run of the validation simulated with the same workload (same
trace seed: common random numbers), replication and settings, from the calibration alone (nothing is
fitted to these runs), each moved to its run's host speed when both carry host probes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sim
from lab.validation.plan import saturation_name
from lab.validation.runs import RunInfo, runs_of
from lab.validation.spec import Validation
from model.errors import InvalidArgument
from model.results.runs import (
    load_config,
    provenance,
    run_config,
    run_exists,
    utc_now,
    workload_of,
    write_run,
)
from sim.hostscale import HostScale, median_probe
from sim.params import load_host_probe, load_params


def sim_overrides(v: Validation, processes: int = 1) -> dict[str, Any]:
    """The experiment's own settings laid over the calibration (slots, store, drain, generators)."""
    overrides: dict[str, Any] = {"slots": v.slots, "store": v.store, "loadgen_processes": processes}
    if "drain" in v.options:
        overrides["drain"] = float(v.options["drain"])
    overrides.update(v.sim_overrides)
    return overrides


def sim_params(v: Validation, processes: int = 1) -> Any:
    """The calibration with sim_overrides: everything the simulator is told."""
    return load_params(v.calibration).with_overrides(sim_overrides(v, processes))


def params_digest(params: Any) -> str:
    return hashlib.sha256(json.dumps(params.to_mapping(), sort_keys=True).encode()).hexdigest()[:16]


def sim_run_id(real_run_id: str) -> str:
    kind, _, rest = real_run_id.partition("-")
    if kind != "real":
        raise InvalidArgument(f"{real_run_id!r} is not a real run id")
    return f"sim-{rest}"


PROBE_NEIGHBOURS = 9  # a run's host speed: the median probe of this many runs nearest in start time


def host_scales(v: Validation, runs: Sequence[RunInfo]) -> dict[str, Any]:
    """Per real run id, the sim.hostscale.HostScale from the calibration's probe to the run's host, or
    None (no scaling: host_scale off, or a probe missing). A run's own probe is noisy (+-20% from one
    probe to the next) while the host drifts over minutes, so a run's speed is the field-by-field
    median of the PROBE_NEIGHBOURS probed runs of its design nearest to it in start time (itself
    included), against the calibration's probes taken with that design's cluster up."""
    out: dict[str, Any] = {r.run_id: None for r in runs}
    if not v.host_scale:
        return out
    references = {d: load_host_probe(v.calibration, d) for d in {r.design for r in runs}}
    half = PROBE_NEIGHBOURS // 2
    for design, reference in references.items():
        if reference is None:
            continue
        probed = sorted(
            (r for r in runs if r.probe and r.design == design), key=lambda r: (r.started_at, r.run_id)
        )
        for i, run in enumerate(probed):
            lo = max(0, min(i - half, len(probed) - PROBE_NEIGHBOURS))
            window = [r.probe for r in probed[lo : lo + PROBE_NEIGHBOURS] if r.probe]
            try:
                out[run.run_id] = HostScale.between(median_probe(window), reference)
            except InvalidArgument:  # a degenerate probe median (a wake-up of 0): leave the twin unmoved
                out[run.run_id] = None
    return out


def simulate(
    v: Validation,
    root: Path | str,
    *,
    records: bool = True,
    log: Any = print,
    force: bool = False,
    reals: Sequence[RunInfo] | None = None,
) -> list[str]:
    """Simulates every real run of the validation found under `root` (points and saturation runs) that
    has no up-to-date simulated twin (same workload, inputs and host scale; the simulator's own code
    is not compared: `force` re-makes every twin after a change to it); returns the run ids written.
    Same workload, seed, replication."""
    root = Path(root)
    params = sim_params(v, int(v.options.get("processes", 1)))
    # a digest, not the ~90 kB mapping (empirical samples), keeps each twin's config.json small
    wanted = params_digest(params)
    stamp = provenance()
    written = []
    if reals is None:  # the matrix's runs (the semantics validation names its own)
        reals = runs_of(root, "real", saturation_name(v)) + runs_of(root, "real", v.name)
    scales = host_scales(v, reals)
    for real in reals:
        run_id = sim_run_id(real.run_id)
        scale = scales[real.run_id]
        scale_mapping = scale.to_mapping() if scale is not None else None
        if run_exists(root, run_id) and not force:
            old = load_config(root / run_id)
            old_parameters = old.get("parameters", {})
            if (
                old.get("workload") == real.workload
                and old_parameters.get("params_sha256") == wanted
                and old_parameters.get("host_scale") == scale_mapping
            ):
                continue  # up to date: same workload, same calibration, settings and host scale
        workload = workload_of(real.workload)
        config = sim.SimConfig(
            design=real.design,  # type: ignore[arg-type]
            workload=workload,
            params=params if scale is None else params.on_host(scale),
            replication=real.replication,
            run_id=run_id,
        )
        started = utc_now()
        result = sim.run(config)
        cfg = run_config(
            run_id=run_id,
            kind="sim",
            design=real.design,
            workload=workload,
            parameters={
                "calibration": params.name,
                "sim_seed": config.sim_seed,
                "params_sha256": wanted,  # of the calibration + overrides, before the host scale
                "host_scale": scale_mapping,
                "overrides": sim_overrides(v, int(v.options.get("processes", 1))),
                "point": dict(real.point),
                "real_run": real.run_id,
            },
            replication=real.replication,
            started_at=started,
            provenance_info=stamp,
        )
        write_run(
            root, run_id, cfg, result.requests, result.jobs, result.summary, records=records, overwrite=True
        )
        written.append(run_id)
        log(f"simulated {run_id} ({result.stats['wall_seconds']:.1f}s)")
    return written
