"""Design B at 3, 6 and 12 nodes: real local clusters beside the simulator's prediction (issue 21).

    flock /tmp/dtq-measure.lock .venv/bin/python -m lab.nodes run     # real runs + their twins (~15 min)
    .venv/bin/python -m lab.nodes table                               # summary.csv, table.md, figure

The same workload at every node count: open-loop Poisson submits at RATE (near Design B's knee: its
measured saturation for 50 ms exponential jobs is ~224/s at six nodes, data/validation/points.csv), 12
worker slots in all (12 / N per node: total slots equal across designs). Each replication round runs
every node count once, in order, on a fresh local cluster (`realsys.cluster.up(nodes=N)`), after one
bare host probe (realsys.hostprobe, no cluster up) for the round. Each real run gets a simulated twin:
the same workload, seed and replication, the simulator fed only data/calibration/local.json with
`nodes` = N, moved to the round's host speed (sim.params.HostScale from the round's bare probe against
the calibration's bare probes, as the validation moves its twins). On one host, with no host hop: the
nodes share the machine's two cores, which the simulator models.

Run directories (config.json and summary.json only) go to data/experiments/nodes/runs/; `table` writes
data/experiments/nodes/{summary.csv, table.md, throughput-latency.png}: per node count the mean and
95% confidence half-width over replications of throughput (completed jobs/s), submit latency p50 and
p99, and job completion p50, real and simulated, and the relative error of the simulated mean.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from model.workload import Distribution, OpenLoop, RequestMix, WorkloadSpec

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


def run_id(kind: str, nodes: int, replication: int) -> str:
    return f"{kind}-mono-nodes.n{nodes}.open{RATE:g}-{SEED}-r{replication}"


def real_run(nodes: int, replication: int, probe: Mapping[str, Any], root: Path) -> Path:
    from realsys import cluster, loadgen
    from realsys.targets import dtq_target_spec
    from sim.runs import provenance, run_config, utc_now, write_run

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


def sim_twin(nodes: int, replication: int, probe: Mapping[str, Any], root: Path) -> Path:
    import sim
    from sim.params import HostScale, load_host_probe, load_params
    from sim.runs import provenance, run_config, write_run

    reference = load_host_probe(CALIBRATION, "bare")
    if reference is None:
        raise RuntimeError(f"data/calibration/{CALIBRATION}.json has no bare host probe")
    scale = HostScale.between(probe, reference)
    params = load_params(CALIBRATION).with_overrides(
        {"nodes": nodes, "slots": SLOTS, "store": "sqlite", "drain": DRAIN, "loadgen_processes": 1}
    )
    spec = workload()
    rid = run_id("sim", nodes, replication)
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
    from realsys.hostprobe import probe as host_probe

    root = out / "runs"
    planned = [run_id(k, n, r) for r in range(replications) for n in counts for k in ("real", "sim")]
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
            print(
                f"  {nodes:2d} nodes: {real.name} and {twin.name} ({time.monotonic() - t0:.0f}s)", flush=True
            )


# ---------------------------------------------------------------------------- the table
def _value(summary: Mapping[str, Any], path: Sequence[str]) -> float:
    node: Any = summary
    for key in path:
        node = node[key]
    return float(node)


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the 95% Student-t half-width (0 for one value)."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, float(
        stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    )


def table_rows(out: Path, counts: Sequence[int]) -> list[dict[str, Any]]:
    import json

    rows = []
    for nodes in counts:
        row: dict[str, Any] = {"nodes": nodes, "slots_per_node": SLOTS // nodes, "rate": RATE}
        for kind in ("real", "sim"):
            summaries = [
                json.loads(p.read_text())
                for p in sorted(
                    (out / "runs").glob(f"{kind}-mono-nodes.n{nodes}.open{RATE:g}-{SEED}-r*/summary.json")
                )
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
            real, simulated = row.get(f"{name}_real"), row.get(f"{name}_sim")
            row[f"{name}_err"] = round((simulated - real) / real, 3) if real and simulated is not None else ""
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
        "mean +- 95% CI over replications; err = (sim - real) / real.",
        "",
        "| nodes | slots/node | n | jobs/s real | jobs/s sim | err | submit p50 ms real | sim | err "
        "| submit p99 ms real | sim | err | completion p50 ms real | sim | err |",
        "|---:|---:|---:|---|---|---:|---|---|---:|---|---|---:|---|---|---:|",
    ]
    for r in rows:
        cells = [str(r["nodes"]), str(r["slots_per_node"]), f"{r['n_real']}/{r['n_sim']}"]
        for name in ("completed_per_s", "submit_p50_ms", "submit_p99_ms", "completion_p50_ms"):
            for kind in ("real", "sim"):
                cells.append(f"{r[f'{name}_{kind}']:.1f} +- {r[f'{name}_{kind}_ci95']:.1f}")
            cells.append(f"{r[f'{name}_err']:+.0%}" if r[f"{name}_err"] != "" else "")
        lines.append("| " + " | ".join(cells) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    _figure(rows, out / "throughput-latency.png")
    return rows


def _figure(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    nodes = [r["nodes"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, (name, label) in zip(
        axes,
        (
            ("completed_per_s", "completed jobs/s"),
            ("submit_p50_ms", "submit p50 (ms)"),
            ("submit_p99_ms", "submit p99 (ms)"),
        ),
        strict=True,
    ):
        for kind, style in (("real", "o-"), ("sim", "s--")):
            ax.errorbar(
                nodes,
                [r[f"{name}_{kind}"] for r in rows],
                yerr=[r[f"{name}_{kind}_ci95"] for r in rows],
                fmt=style,
                capsize=3,
                label=kind,
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
    parser.add_argument("action", choices=["run", "table"])
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
    for row in write_table(out, counts):
        print(row)
    print(f"written: {out}/summary.csv, table.md, throughput-latency.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
