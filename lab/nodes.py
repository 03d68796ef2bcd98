"""Design B at 3, 6 and 12 nodes: real local clusters beside the simulator's prediction (issue 21).

    flock /tmp/dtq-measure.lock .venv/bin/python -m lab.nodes run     # real runs + their twins (~15 min)
    .venv/bin/python -m lab.nodes table                               # summary.csv, table.md, figure

The same workload at every node count: open-loop Poisson submits at RATE (near Design B's knee: its
measured saturation for 50 ms exponential jobs is ~224/s at six nodes, data/validation/points.csv), 12
worker slots in all (12 / N per node: total slots equal across designs). Each replication round runs
every node count once, in order, on a fresh local cluster (`realsys.cluster.up(nodes=N)`), after one
bare host probe (lab.calibration.hostprobe, no cluster up) for the round. Each real run gets a simulated twin:
the same workload, seed and replication, the simulator fed only data/calibration/local.json with
`nodes` = N, moved to the round's host speed (sim.params.HostScale from the round's bare probe against
the calibration's bare probes, as the validation moves its twins), and a second twin left at the
calibration's host speed (run ids `...calhost...`). On one host, with no host hop: the nodes share the
machine's two cores, which the simulator models. `twins` (re)makes the twins of the real runs on disk.

Run directories (config.json and summary.json only) go to data/experiments/nodes/runs/; `table` writes
data/experiments/nodes/{summary.csv, table.md, throughput-latency.png}: per node count the mean and
95% confidence half-width over replications of throughput (completed jobs/s), submit latency p50 and
p99, and job completion p50 and p99, real and both twins, and the relative error of each twin's mean.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

import sim
from lab.calibration.hostprobe import probe as host_probe
from model.results.runs import provenance, run_config, utc_now, write_run
from model.results.stats import mean_ci
from model.workload import Distribution, OpenLoop, RequestMix, WorkloadSpec
from realsys import cluster, loadgen
from realsys.targets import dtq_target_spec
from sim.hostscale import HostScale
from sim.params import load_host_probe, load_params

OUT = Path("data/experiments/nodes")
NODE_COUNTS = (3, 6, 12)
SLOTS = 12
RATE = 180.0  # ~0.8 of Design B's measured saturation (exp50ms, submit only)
SEED = 11
CALIBRATION = "local"
DRAIN = 10.0
METRICS = (  # name, path in summary.json
    ("completed_per_s", ("throughput", "completed_per_s")),
    ("submit_p50_ms", ("latency_ms", "submit", "p50")),
    ("submit_p99_ms", ("latency_ms", "submit", "p99")),
    ("completion_p50_ms", ("completion_ms", "p50")),
    ("completion_p99_ms", ("completion_ms", "p99")),
)


def workload() -> WorkloadSpec:
    return WorkloadSpec(
        OpenLoop(RATE, max_in_flight=1024),
        RequestMix(submit=1.0),
        duration=Distribution("exponential", 0.05),
        payload_bytes=0,
        run_time=8.0,
        warmup=2.0,
        seed=SEED,
    )


KINDS = {  # table column -> run-id prefix and name suffix
    "real": ("real", ""),
    "sim": ("sim", ""),  # the twin moved to the run's host speed
    "simcal": ("sim", ".calhost"),  # the twin at the calibration's host speed (no HostScale)
}


def run_id(kind: str, nodes: int, replication: int) -> str:
    prefix, suffix = KINDS[kind]
    return f"{prefix}-mono-nodes.n{nodes}.open{RATE:g}{suffix}-{SEED}-r{replication}"


def real_run(nodes: int, replication: int, probe: Mapping[str, Any], root: Path) -> Path:

    spec = workload()
    with tempfile.TemporaryDirectory(prefix=f"dtq-nodes-{nodes}-") as tmp:
        info = cluster.up("mono", Path(tmp), SLOTS, "sqlite", nodes=nodes, timeout=60)
        try:
            started_at = utc_now()
            result = loadgen.run(dtq_target_spec(info.clients, design="mono"), spec, 1, drain_timeout=DRAIN)
        finally:
            cluster.down(Path(tmp))
    rid = run_id("real", nodes, replication)
    summary = loadgen.summary_of(result, spec, run_id=rid, kind="real", design="mono")
    config = run_config(
        run_id=rid,
        kind="real",
        design="mono",
        workload=spec,
        parameters={
            "store": "sqlite",
            "total_slots": SLOTS,
            "nodes": nodes,
            "slots": cluster.slots_per_node("mono", SLOTS, nodes),
            "host_probe": dict(probe),
        },
        replication=replication,
        started_at=started_at,
        provenance_info=provenance(),
    )
    return write_run(root, rid, config, result.requests, result.jobs, summary, records=False, overwrite=True)


def sim_twin(nodes: int, replication: int, probe: Mapping[str, Any], root: Path, scaled: bool = True) -> Path:
    """The real run's twin, moved to its host's speed (`scaled`), or at the calibration's."""

    reference = load_host_probe(CALIBRATION, "bare")
    if reference is None:
        raise RuntimeError(f"data/calibration/{CALIBRATION}.json has no bare host probe")
    scale = HostScale.between(probe, reference) if scaled else HostScale()
    params = load_params(CALIBRATION).with_overrides(
        {"nodes": nodes, "slots": SLOTS, "store": "sqlite", "drain": DRAIN, "loadgen_processes": 1}
    )
    spec = workload()
    rid = run_id("sim" if scaled else "simcal", nodes, replication)
    result = sim.run(sim.SimConfig("mono", spec, params.on_host(scale), replication=replication, run_id=rid))
    config = run_config(
        run_id=rid,
        kind="sim",
        design="mono",
        workload=spec,
        parameters={
            "calibration": CALIBRATION,
            "nodes": nodes,
            "total_slots": SLOTS,
            "host_scale": scale.to_mapping(),
        },
        replication=replication,
        provenance_info=provenance(),
    )
    return write_run(
        root, rid, config, result.requests, result.jobs, result.summary, records=False, overwrite=True
    )


def run(replications: int, out: Path, counts: Sequence[int], force: bool = False) -> None:

    root = out / "runs"
    planned = [run_id(k, n, r) for r in range(replications) for n in counts for k in KINDS]
    existing = [rid for rid in planned if (root / rid).exists()]
    if existing and not force:
        raise FileExistsError(
            f"{len(existing)} runs exist under {root} (e.g. {existing[0]}): --force re-makes them"
        )
    for replication in range(replications):
        probe = host_probe()  # bare: no cluster up, as the calibration's bare probes
        print(f"round {replication}: host probe {probe}", flush=True)
        for nodes in counts:
            t0 = time.monotonic()
            real = real_run(nodes, replication, probe, root)
            twin = sim_twin(nodes, replication, probe, root)
            sim_twin(nodes, replication, probe, root, scaled=False)
            print(
                f"  {nodes:2d} nodes: {real.name} and {twin.name} ({time.monotonic() - t0:.0f}s)", flush=True
            )


def twins(out: Path, counts: Sequence[int], force: bool = False) -> int:
    """Both twins of every real run on disk, from the probe in its config.json; existing twins are
    kept unless `force` (the simulator is deterministic: a twin changes only with the code)."""

    made = 0
    for nodes in counts:
        pattern = run_id("real", nodes, 0).removesuffix("0") + "*"
        for real in sorted((out / "runs").glob(pattern)):
            config = json.loads((real / "config.json").read_text())
            replication, probe = int(config["replication"]), config["parameters"]["host_probe"]
            for kind, scaled in (("sim", True), ("simcal", False)):
                if force or not (out / "runs" / run_id(kind, nodes, replication)).exists():
                    sim_twin(nodes, replication, probe, out / "runs", scaled)
                    made += 1
    return made


# ---------------------------------------------------------------------------- the table
def _value(summary: Mapping[str, Any], path: Sequence[str]) -> float:
    node: Any = summary
    for key in path:
        node = node[key]
    return float(node)


def table_rows(out: Path, counts: Sequence[int]) -> list[dict[str, Any]]:

    rows = []
    for nodes in counts:
        row: dict[str, Any] = {"nodes": nodes, "slots_per_node": SLOTS // nodes, "rate": RATE}
        for kind in KINDS:
            pattern = run_id(kind, nodes, 0).removesuffix("0") + "*"
            summaries = [
                json.loads((p / "summary.json").read_text()) for p in sorted((out / "runs").glob(pattern))
            ]
            row[f"n_{kind}"] = len(summaries)
            if kind == "real":
                row["errors_real"] = sum(sum(s.get("errors", {}).values()) for s in summaries)
                row["unfinished_real"] = sum(s["jobs"]["unfinished"] for s in summaries)
            for name, path in METRICS:
                if summaries:
                    mean, ci = mean_ci([_value(s, path) for s in summaries])
                    row[f"{name}_{kind}"], row[f"{name}_{kind}_ci95"] = round(mean, 3), round(ci, 3)
        for name, _ in METRICS:
            real = row.get(f"{name}_real")
            for kind, tag in (("sim", "err"), ("simcal", "err_calhost")):
                simulated = row.get(f"{name}_{kind}")
                row[f"{name}_{tag}"] = (
                    round((simulated - real) / real, 3) if real and simulated is not None else ""
                )
        rows.append(row)
    return rows


def write_table(out: Path, counts: Sequence[int]) -> list[dict[str, Any]]:
    rows = table_rows(out, counts)
    with (out / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"Design B, open-loop Poisson submits at {RATE:g}/s, 50 ms exponential jobs, {SLOTS} slots in all; "
        "mean +- 95% CI over replications. sim: the twin moved to the round's host speed (HostScale); "
        "err = (sim - real) / real; cal: the twin at the calibration's host speed, and its error.",
        "",
        "| nodes | slots/node | n | metric | real | sim | err | cal | err (cal) |",
        "|---:|---:|---:|---|---|---|---:|---|---:|",
    ]
    labels = {
        "completed_per_s": "jobs/s",
        "submit_p50_ms": "submit p50 ms",
        "submit_p99_ms": "submit p99 ms",
        "completion_p50_ms": "completion p50 ms",
    }
    for r in rows:
        for name, label in labels.items():
            cells = [
                str(r["nodes"]),
                str(r["slots_per_node"]),
                f"{r['n_real']}/{r['n_sim']}/{r['n_simcal']}",
                label,
            ]
            for kind, tag in (("real", ""), ("sim", "err"), ("simcal", "err_calhost")):
                if f"{name}_{kind}" not in r:
                    cells += ["", ""] if tag else [""]
                    continue
                cells.append(f"{r[f'{name}_{kind}']:.1f} +- {r[f'{name}_{kind}_ci95']:.1f}")
                if tag:
                    cells.append(f"{r[f'{name}_{tag}']:+.0%}" if r[f"{name}_{tag}"] != "" else "")
            lines.append("| " + " | ".join(cells) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    _figure(rows, out / "throughput-latency.png")
    return rows


def _figure(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    nodes = [r["nodes"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, (name, label) in zip(
        axes,
        (
            ("completed_per_s", "completed jobs/s"),
            ("submit_p50_ms", "submit p50 (ms)"),
            ("completion_p50_ms", "job completion p50 (ms)"),
        ),
        strict=True,
    ):
        for kind, style in (("real", "o-"), ("sim", "s--"), ("simcal", "^:")):
            if any(f"{name}_{kind}" not in r for r in rows):
                continue
            ax.errorbar(
                nodes,
                [r[f"{name}_{kind}"] for r in rows],
                yerr=[r[f"{name}_{kind}_ci95"] for r in rows],
                fmt=style,
                capsize=3,
                label={"real": "real", "sim": "sim (run's host speed)", "simcal": "sim (calibration's)"}[
                    kind
                ],
            )
        ax.set_xlabel("Design B nodes")
        ax.set_title(label)
        ax.set_xticks(nodes)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.nodes", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("action", choices=["run", "twins", "table"])
    parser.add_argument("--replications", type=int, default=3)
    parser.add_argument(
        "--nodes", default=",".join(map(str, NODE_COUNTS)), help="node counts, comma-separated"
    )
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--force", action="store_true", help="run: re-make runs that exist")
    args = parser.parse_args(argv)
    try:
        counts = [int(x) for x in args.nodes.split(",") if x.strip()]
    except ValueError:
        print(f"lab.nodes: --nodes must be integers, got {args.nodes!r}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if args.action == "run":
        if args.replications < 1:
            print("lab.nodes: --replications must be >= 1", file=sys.stderr)
            return 2
        try:
            run(args.replications, out, counts, args.force)
        except FileExistsError as exc:
            print(f"lab.nodes: {exc}", file=sys.stderr)
            return 2
    if args.action == "twins":  # the simulated twins of the real runs on disk, from their own probes
        made = twins(out, counts, args.force)
        print(f"{made} twins written")
    for row in write_table(out, counts):
        print(row)
    print(f"written: {out}/summary.csv, table.md, throughput-latency.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
