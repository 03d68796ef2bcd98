"""The extended validation's tables (issue 23; data/experiments/validation-extended/): from the per-part
summaries that `python -m lab.validation.closed_loop` wrote (data/validation/extended/<experiment>.json),
per utilisation band the median |error| of each metric beside the real noise floor, the latency
distributions' Wasserstein-1 distance beside its floor, the A-versus-B winners, and, apart, the
out-of-sample rows of the held-out workloads (data/experiments/holdout/results*.json).

A closed loop has no offered rate: its rho is its served requests/s over its design's saturation for
its workload, the saturation rate (lab.validation.runs.saturation_rate) of the 32-client loop that does
not wait: the vx_closed c32 point of the same mix for vx_closed and vx_closed_wait, and for the other
parts a saturation run of their own workload (`saturation` stage: experiment vx_sat_<part>, 1
replication per design, 3 s of load after 1 s of warm-up, as the matrix's saturation runs).

    flock /tmp/dtq-measure.lock python -m lab.validation.extended saturation   # the real runs
    python -m lab.validation.extended tables [--variant model]  # -> data/validation/extended/tables.*

`--prefix P` (run, saturation, tables) is the same matrix under new experiment names, so a re-run never
overwrites the committed one: experiment `vx_closed` becomes `P_closed`, `vx_sat_cpu` `P_sat_cpu`, the
per-part comparisons are read from `P_<part>.json`; `run` runs one part's experiment file so renamed
(`flock ... python -m lab.validation.extended run --prefix vxf --parts vx_closed`). A table of another
prefix leaves out the held-out and post-hoc rows (they belong to the committed matrix's layout).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from scipy.stats import spearmanr

from lab.experiment.runner import run_experiment
from lab.experiment.spec import experiment_from_mapping
from lab.validation.accuracy import band_names, band_of
from lab.validation.output import json_safe
from lab.validation.runs import saturation_rate
from model.results.runs import load_config, load_summary, run_exists
from model.results.stats import mean_ci, winner

FILES = Path("data/experiments/validation-extended")
OUT = Path("data/validation/extended")
RUNS = Path("data/runs")
HOLDOUT = Path("data/experiments/holdout")
EDGES = (0.5, 0.8)
DESIGNS = ("micro", "mono")
# experiment -> its file; the closed loops' saturation is vx_closed's own c32 point
PARTS = {
    "vx_closed": "closed-nowait.yaml",
    "vx_closed_wait": "closed-wait.yaml",
    "vx_payload16k": "payloads.yaml",
    "vx_payload256k": "payloads-256k.yaml",
    "vx_jobs_cpu": "jobs-cpu.yaml",
    "vx_jobs_half": "jobs-half.yaml",
    "vx_jobs_mixture": "jobs-mixture.yaml",
}
OWN_SATURATION = ("vx_payload16k", "vx_payload256k", "vx_jobs_cpu", "vx_jobs_half", "vx_jobs_mixture")
# closed_loop.METRICS, with the names; +1: higher is better, -1: lower is
METRICS = (
    ("throughput", +1),
    ("p50", -1),
    ("p95", -1),
    ("p99", -1),
    ("p99.9", -1),
    ("done_p50", -1),
    ("done_p99", -1),
)
WINNER_METRICS = ("throughput", "p50", "p99")
NO_SATURATION = "no saturation run"
PREFIX = "vx"


def renamed(part: str, prefix: str = PREFIX) -> str:
    """The part's experiment name under `prefix` (vx_closed -> <prefix>_closed)."""
    if not re.fullmatch(r"[a-z][a-z0-9]*", prefix):
        raise ValueError(f"prefix {prefix!r}: lower-case letters and digits, starting with a letter")
    return prefix + part.removeprefix(PREFIX)


def part_mapping(part: str, prefix: str = PREFIX) -> dict[str, Any]:
    """The part's experiment file, its name under `prefix`."""
    return {**yaml.safe_load((FILES / PARTS[part]).read_text()), "name": renamed(part, prefix)}


def run_parts(parts: Sequence[str], prefix: str, root: Path = RUNS) -> None:
    for part in parts:
        report = run_experiment(
            experiment_from_mapping(part_mapping(part, prefix)), root, progress=False, log=print
        )
        if report.failed:
            raise SystemExit(f"{part}: runs failed: {report.failed}")


# ---------------------------------------------------------------------------- saturation runs
def saturation_mapping(part: str, prefix: str = PREFIX) -> dict[str, Any]:
    """The part's workload as a 32-client loop that does not wait, for each of its mixes."""
    spec = yaml.safe_load((FILES / PARTS[part]).read_text())
    workload = {
        **spec["workload"],
        "arrival": {"kind": "closed", "clients": 1, "wait_for_completion": False},
        "run_time": 3.0,
        "warmup": 1.0,
    }
    sweep = {"design": list(DESIGNS), "concurrency": [32], "store": ["sqlite"], "slots": [12]}
    if "mix" in spec["sweep"]:
        sweep["mix"] = spec["sweep"]["mix"]
    options = {**spec.get("options", {}), "records": False}
    return {
        "name": f"{renamed('vx', prefix)}_sat_{part.removeprefix('vx_')}",
        "workload": workload,
        "replications": 1,
        "sweep": sweep,
        "options": options,
    }


def run_saturation(root: Path = RUNS, parts: Sequence[str] = OWN_SATURATION, prefix: str = PREFIX) -> None:
    for part in parts:
        report = run_experiment(
            experiment_from_mapping(saturation_mapping(part, prefix)), root, progress=False, log=print
        )
        if report.failed:
            raise SystemExit(f"{part}: saturation runs failed: {report.failed}")


def _mix_of(point: str) -> str:
    """The mix label of a point id (real-<design>-<exp>.c<n>[.<mix>].sqlite.s12), '' when none."""
    labels = point.split("-", 2)[2].split(".")[1:]
    return next((x for x in labels if x in ("submit", "mixed", "reads")), "")


def saturations(root: Path = RUNS, prefix: str = PREFIX) -> dict[tuple[str, str, str], float]:
    """(part, design, mix) -> saturation requests/s (see the module docstring)."""
    values: dict[tuple[str, str, str], list[float]] = {}
    closed = renamed("vx_closed", prefix)
    for path in sorted(root.glob(f"real-*-{closed}.c32.*")) + sorted(root.glob(f"real-*-{prefix}_sat_*")):
        if not run_exists(root, path.name):
            continue
        cfg, summary = load_config(path), load_summary(path)
        rate = saturation_rate(summary, float(cfg["workload"]["mix"].get("submit", 0.0)))
        if rate is None:
            continue
        exp = path.name.split("-", 2)[2].split(".")[0]
        part = "vx_closed" if exp == closed else "vx_" + exp.removeprefix(f"{prefix}_sat_")
        values.setdefault((part, str(cfg["design"]), _mix_of(path.name)), []).append(rate)
    return {k: statistics.fmean(v) for k, v in values.items()}


# ---------------------------------------------------------------------------- tables
def load_parts(folder: Path = OUT, prefix: str = PREFIX) -> dict[str, Mapping[str, Any]]:
    """part -> its comparison (folder / <the part's experiment name under prefix>.json)."""
    return {
        part: json.loads((folder / f"{renamed(part, prefix)}.json").read_text())
        for part in PARTS
        if (folder / f"{renamed(part, prefix)}.json").is_file()
    }


def host_load(point: str, root: Path = RUNS) -> dict[str, float]:
    """The mean over a point's real runs of their host probe's 1-minute load average and busy-loop
    time (us): how loaded and how slow the shared host was when the point ran."""
    probes = []
    for path in sorted(root.glob(f"{point}-*")):
        if (path / "config.json").is_file():
            probe = load_config(path).get("parameters", {}).get("host_probe") or {}
            if "loadavg_1m" in probe:
                probes.append(probe)
    if not probes:
        return {}
    return {
        k: statistics.fmean(float(p[k]) for p in probes) for k in ("loadavg_1m", "busy_us") if k in probes[0]
    }


def point_rows(
    parts: Mapping[str, Mapping[str, Any]],
    sat: Mapping[tuple[str, str, str], float],
    variant: str,
    root: Path = RUNS,
) -> list[dict[str, Any]]:
    """One row per point: part, design, mix, rho, band, per metric error and floor, distances, and the
    host's load while it ran."""
    rows = []
    for part, result in parts.items():
        names = list(result["metrics"])
        for p in result["points"]:
            design = p["point"].split("-")[1]
            base = sat.get(("vx_closed" if part == "vx_closed_wait" else part, design, _mix_of(p["point"])))
            served = p["real"][names.index("requests_per_s")]
            rho = served / base if base else math.nan
            rows.append(
                {
                    "part": part,
                    "point": p["point"],
                    "design": design,
                    "served": served,
                    "saturation": base,
                    "rho": rho,
                    "band": band_of(rho, EDGES) if not math.isnan(rho) else NO_SATURATION,
                    "error": dict(zip(_names(names), p[variant], strict=True)),
                    "floor": dict(zip(_names(names), p["spread"], strict=True)),
                    "real": dict(zip(_names(names), p["real"], strict=True)),
                    "real_replications": [
                        dict(zip(_names(names), r, strict=True)) for r in p["real_replications"]
                    ],
                    "twins": dict(zip(_names(names), p[f"{variant} twins"], strict=True)),
                    "distance": p.get(f"{variant} distance"),
                    "distance_floor": p.get("distance_spread"),
                    "host": host_load(p["point"], root),
                }
            )
    return rows


def _names(names: Sequence[str]) -> list[str]:
    return ["throughput" if n == "requests_per_s" else n for n in names]


def _median(values: Sequence[float | None]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def band_table(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per band (and 'all'): per metric the median |error| and the median real floor, the target
    (the floor at rho <= 0.8, 1.5x above) and whether it is met; the distance beside its floor."""
    out = []
    for band in [*band_names(EDGES), NO_SATURATION, "all"]:
        members = [r for r in rows if band == "all" or r["band"] == band]
        if not members:
            continue
        entry: dict[str, Any] = {"band": band, "points": len(members), "metrics": {}}
        factor = 1.5 if band.startswith("rho>") else 1.0
        judged = band not in ("all", NO_SATURATION)
        for name, _ in METRICS:
            err = _median([abs(r["error"][name]) for r in members])
            floor = _median([r["floor"][name] for r in members])
            entry["metrics"][name] = {
                "median_abs_error": err,
                "floor": floor,
                "target": factor * floor if judged else math.nan,
                "met": bool(err <= factor * floor) if judged else None,
            }
        entry["distance"] = _median([r["distance"] for r in members])
        entry["distance_floor"] = _median([r["distance_floor"] for r in members])
        out.append(entry)
    return out


def _winner_cells(
    real_a: Mapping[str, Sequence[float]],
    real_b: Mapping[str, Sequence[float]],
    sim_a: Mapping[str, float],
    sim_b: Mapping[str, float],
) -> dict[str, dict[str, Any]]:
    """Per winner metric: the real winner of A's against B's replications (decisive only where their
    95% intervals separate), the simulated one by the predicted values, and whether they agree."""
    label = {"a": DESIGNS[0], "b": DESIGNS[1], "tie": "tie", "": ""}
    cells: dict[str, dict[str, Any]] = {}
    for name, better in METRICS:
        if name not in WINNER_METRICS:
            continue
        ra, ra_ci = mean_ci(real_a[name])
        rb, rb_ci = mean_ci(real_b[name])
        real_w = winner(ra, rb, higher_is_better=better > 0, a_ci=ra_ci, b_ci=rb_ci)
        sim_w = winner(sim_a[name], sim_b[name], higher_is_better=better > 0)
        cells[name] = {
            "real": label[real_w],
            "sim": label[sim_w],
            "agree": None if real_w in ("tie", "") else real_w == sim_w,
        }
    return cells


def winner_table(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """At each point run by both designs: per metric the real winner (decisive only where the
    replications' 95% intervals separate), the simulated one (by the twins' means), and agreement."""
    by_point: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in rows:
        by_point.setdefault(re.sub(r"^real-(micro|mono)-", "", r["point"]), {})[r["design"]] = r
    out = []
    for key, pair in sorted(by_point.items()):
        if not all(d in pair for d in DESIGNS):
            continue
        a, b = (pair[d] for d in DESIGNS)
        row: dict[str, Any] = {"point": key, "rho_micro": a["rho"], "rho_mono": b["rho"]}
        real_a, real_b = ({m: [x[m] for x in r["real_replications"]] for m in WINNER_METRICS} for r in (a, b))
        row.update(_winner_cells(real_a, real_b, a["twins"], b["twins"]))
        out.append(row)
    return out


def winner_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    return {
        name: {
            "points": len(rows),
            "decisive": sum(r[name]["agree"] is not None for r in rows),
            "agree": sum(r[name]["agree"] is True for r in rows),
        }
        for name in WINNER_METRICS
    }


def mechanisms(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """In-sample evidence for the gaps: per metric the rank correlation (Spearman) over the points
    between the host's load average while a point ran and the simulator's signed error; and the tail
    width p99 / p50, real against simulated (median over the points)."""
    loaded = [r for r in rows if r.get("host", {}).get("loadavg_1m") is not None]
    out: dict[str, Any] = {"points": len(loaded), "load_vs_error": {}}
    for name, _ in METRICS:
        pairs = [
            (r["host"]["loadavg_1m"], r["error"][name]) for r in loaded if math.isfinite(r["error"][name])
        ]
        if len(pairs) >= 3:
            rho, pvalue = spearmanr([a for a, _ in pairs], [b for _, b in pairs])
            out["load_vs_error"][name] = {"spearman": float(rho), "p": float(pvalue), "n": len(pairs)}
    out["signed_by_design"] = {
        design: {
            name: _median([r["error"][name] for r in rows if r["design"] == design]) for name, _ in METRICS
        }
        for design in DESIGNS
    }
    out["tail_width_real"] = _median(
        [r["real"]["p99"] / r["real"]["p50"] for r in rows if r["real"]["p50"] > 0]
    )
    out["tail_width_sim"] = _median(
        [r["twins"]["p99"] / r["twins"]["p50"] for r in rows if r["twins"]["p50"] > 0]
    )
    out["loadavg_range"] = (
        [min(r["host"]["loadavg_1m"] for r in loaded), max(r["host"]["loadavg_1m"] for r in loaded)]
        if loaded
        else []
    )
    return out


LOAD_BINS = ((0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 6.0), (6.0, 10.0), (10.0, 100.0))


def tail_width_by_load(
    root: Path = RUNS, patterns: Sequence[str] = ("real-*-validation.*", "real-*-vx_*")
) -> dict[str, Any]:
    """Per set of real runs: the rank correlation between the host's load at a run's start (its probe)
    and the run's request latency tail width p99 / p50, and the median width per load bin."""
    out: dict[str, Any] = {}
    for pattern in patterns:
        pairs = []
        for path in sorted(root.glob(pattern)):
            if not run_exists(root, path.name):
                continue
            probe = load_config(path).get("parameters", {}).get("host_probe") or {}
            lat = load_summary(path).get("latency_ms", {}).get("all", {})
            if probe.get("loadavg_1m") is not None and lat.get("p50") and lat.get("p99"):
                pairs.append((float(probe["loadavg_1m"]), float(lat["p99"]) / float(lat["p50"])))
        if len(pairs) < 3:
            continue
        rho, pvalue = spearmanr([a for a, _ in pairs], [b for _, b in pairs])
        out[pattern] = {
            "runs": len(pairs),
            "spearman": float(rho),
            "p": float(pvalue),
            "bins": [
                {"load": [lo, hi], "runs": len(w), "median_width": statistics.median(w)}
                for lo, hi in LOAD_BINS
                if (w := [b for a, b in pairs if lo <= a < hi])
            ],
        }
    return out


HOLDOUT_METRICS = (
    ("throughput", "throughput"),
    ("p50", "p50"),
    ("p95", "p95"),
    ("p99", "p99"),
    ("p99.9", "p999"),
    ("done_p50", "done_p50"),
    ("done_p99", "done_p99"),
)


def holdout_rows(folder: Path = HOLDOUT) -> list[dict[str, Any]]:
    """The out-of-sample points (Q1-Q3: results.json; H1-H4: results-h.json), never tuned on."""
    out = []
    for file, group in (("results.json", "Q1-Q3"), ("results-h.json", "H1-H4")):
        path = folder / file
        if not path.is_file():
            continue
        for p in json.loads(path.read_text())["points"]:
            metrics = p["metrics"]
            out.append(
                {
                    "group": group,
                    "point": f"{p['case']} {p['design']}",
                    "rate": p["rate"],
                    "n_real": p["n_real"],
                    "error": {n: metrics[k]["error"] for n, k in HOLDOUT_METRICS if k in metrics},
                    "floor": {n: metrics[k]["floor"] for n, k in HOLDOUT_METRICS if k in metrics},
                    "real": {n: metrics[k].get("real", []) for n, k in HOLDOUT_METRICS if k in metrics},
                    "predicted": {
                        n: metrics[k].get("predicted", math.nan) for n, k in HOLDOUT_METRICS if k in metrics
                    },
                }
            )
    return out


def holdout_winners(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Micro against mono on the held-out closed loops (the same workload for both designs; the open
    points ran at each design's own rho, so they do not compare the designs at one load)."""
    by_case: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in rows:
        if r["rate"] == "closed":
            case, design = r["point"].split()
            by_case.setdefault(case, {})[design] = r
    out = []
    for case, pair in sorted(by_case.items()):
        if not all(d in pair for d in DESIGNS):
            continue
        a, b = (pair[d] for d in DESIGNS)
        row: dict[str, Any] = {"point": case}
        row.update(_winner_cells(a["real"], b["real"], a["predicted"], b["predicted"]))
        out.append(row)
    return out


def holdout_summary(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for group in [*sorted({r["group"] for r in rows}), "all"]:
        members = [r for r in rows if group == "all" or r["group"] == group]
        out.append(
            {
                "group": group,
                "points": len(members),
                "metrics": {
                    n: {
                        "median_abs_error": _median(
                            [abs(r["error"][n]) for r in members if r["error"].get(n) is not None]
                        ),
                        "floor": _median([r["floor"].get(n) for r in members]),
                    }
                    for n, _ in HOLDOUT_METRICS
                },
            }
        )
    return out


def posthoc_rows(folder: Path = OUT / "posthoc") -> list[dict[str, Any]]:
    """POST-HOC rows, never out of sample: held-out runs re-simulated after their real runs were seen
    (closed_loop JSON files in posthoc/: the current code, with or without each run's host probe)."""
    out = []
    for path in sorted(folder.glob("*.json")):
        result = json.loads(path.read_text())
        if "metrics" not in result:  # not a closed_loop file (background.py's post-hoc scores)
            continue
        names = _names(result["metrics"])
        variant = next(k for k in result["medians"] if k not in ("floor",) and not k.endswith(" bias"))
        out.append(
            {
                "file": path.name,
                "calibration": result["calibration"],
                "host_scale": result.get("host_scale", True),
                "points": len(result["points"]),
                "median_abs_error": dict(zip(names, result["medians"][variant], strict=True)),
                "floor": dict(zip(names, result["medians"]["floor"], strict=True)),
            }
        )
    return out


def build(
    variant: str = "model", folder: Path = OUT, root: Path = RUNS, prefix: str = PREFIX
) -> dict[str, Any]:
    parts = load_parts(folder, prefix)
    sat = saturations(root, prefix)
    rows = point_rows(parts, sat, variant, root)
    winners = winner_table(rows)
    committed = prefix == PREFIX  # the held-out and post-hoc rows belong to the committed matrix
    held = holdout_rows() if committed else []
    patterns = ("real-*-validation.*", "real-*-vx_*") if committed else (f"real-*-{prefix}_*",)
    return {
        "prefix": prefix,
        "variant": variant,
        "calibration": sorted({p["calibration"] for p in parts.values()}),
        "saturation": {f"{k[0]}.{k[1]}.{k[2] or '-'}": v for k, v in sorted(sat.items())},
        "points": rows,
        "bands": band_table(rows),
        "winners": winners,
        "winner_summary": winner_summary(winners),
        "mechanisms": {**mechanisms(rows), "tail_width_by_load": tail_width_by_load(root, patterns)},
        "holdout": held,
        "holdout_summary": holdout_summary(held),
        "holdout_winners": holdout_winners(held),
        "posthoc": posthoc_rows(folder / "posthoc") if committed else [],
    }


# ---------------------------------------------------------------------------- output
def _pct(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.0f}%"


def _signed(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:+.0f}%"


def markdown(t: Mapping[str, Any]) -> str:
    names = [n for n, _ in METRICS]
    lines = [
        "# Extended validation: error by utilisation band",
        "",
        "Generated by `python -m lab.validation.extended tables`.",
        "",
        f"Calibration {', '.join(t['calibration'])}; twins moved to each run's probed host speed; variant "
        f"`{t['variant']}`. Each cell: median |error| over the band's points / the real noise floor (median "
        "over the points of the replications' median |x - mean| / mean). Target: at rho <= 0.8 the error "
        "at or below the floor, above 0.8 within 1.5x the floor (yes/no). rho: served requests/s over the "
        "design's saturation for the workload (32-client loop not waiting; see lab/validation/extended.py).",
        "",
        *_head("band", "points", *names, "W1 / floor"),
    ]
    for b in t["bands"]:
        cells = []
        for n in names:
            m = b["metrics"][n]
            met = "" if m["met"] is None else (" yes" if m["met"] else " no")
            cells.append(f"{_pct(m['median_abs_error'])} / {_pct(m['floor'])}{met}")
        lines.append(
            f"| {b['band']} | {b['points']} | "
            + " | ".join(cells)
            + f" | {b['distance']:.2f} / {b['distance_floor']:.2f} |"
        )
    lines += [
        "",
        "W1: Wasserstein-1 distance between the real and simulated request latency distributions over "
        "the real mean latency (median over the points); floor: one replication against the others.",
        "",
    ]
    lines += [
        "## Per point",
        "",
        *_head("point", "rho", *names, "W1", "W1 floor"),
    ]
    for r in t["points"]:
        lines.append(
            f"| {r['point'].removeprefix('real-')} | {r['rho']:.2f} | "
            + " | ".join(f"{_signed(r['error'][n])} ({_pct(r['floor'][n])})" for n in names)
            + f" | {_fmt2(r['distance'])} | {_fmt2(r['distance_floor'])} |"
        )
    lines += [
        "",
        "## A versus B (micro vs mono)",
        "",
        "Real winner: decisive only where the replications' 95% intervals separate; simulated: by the "
        "twins' means.",
        "",
    ]
    s = t["winner_summary"]
    lines.append(
        "Summary: "
        + "; ".join(
            f"{n}: {s[n]['agree']} of {s[n]['decisive']} decisive points agree ({s[n]['points']} points)"
            for n in WINNER_METRICS
        )
    )
    lines += [
        "",
        *_head("point", "rho A / B", *(f"{n} real / sim" for n in WINNER_METRICS)),
    ]
    for w in t["winners"]:
        lines.append(
            f"| {w['point']} | {w['rho_micro']:.2f} / {w['rho_mono']:.2f} | "
            + " | ".join(_winner_marks(w))
            + " |"
        )
    m = t.get("mechanisms")
    if m:
        lines += [
            "",
            "## Mechanism evidence (in sample)",
            "",
            f"Host 1-minute load average while the points ran: {_range(m['loadavg_range'])} on 2 cores. "
            "Spearman rank correlation over the points between that load and the simulator's signed error:",
            "",
            *_head("metric", "Spearman", "p", "n"),
        ]
        for name, c in m["load_vs_error"].items():
            lines.append(f"| {name} | {c['spearman']:+.2f} | {c['p']:.3f} | {c['n']} |")
        lines += [
            "",
            "Median signed error by design (+: the simulator too high):",
            "",
            *_head("design", *names),
        ]
        for design, errs in m["signed_by_design"].items():
            lines.append(f"| {design} | " + " | ".join(_signed(errs[n]) for n in names) + " |")
        lines += [
            "",
            f"Tail width p99 / p50 (median over the points): real {m['tail_width_real']:.1f}, simulated "
            f"{m['tail_width_sim']:.1f}.",
            "",
            "Real tail width p99 / p50 by the host's load at the run's start (each run's probe), over "
            "all real runs of a pattern (the validation matrix of 2026-12-04 and this matrix):",
            "",
            *_head("runs", "n", "Spearman (load, width)", "p", "median width by load"),
        ]
        for pattern, w in m.get("tail_width_by_load", {}).items():
            bins = ", ".join(
                f"{b['load'][0]:g}-{b['load'][1]:g}: {b['median_width']:.1f} ({b['runs']})" for b in w["bins"]
            )
            lines.append(f"| `{pattern}` | {w['runs']} | {w['spearman']:+.2f} | {w['p']:.1g} | {bins} |")
    if not t["holdout"]:
        lines += [
            "",
            "No held-out rows here: they belong to the committed matrix (its tables.md); the "
            "held-out sets of a re-run are scored apart (results-*.md).",
        ]
    else:
        hnames = [n for n, _ in HOLDOUT_METRICS]
        lines += [
            "",
            "## Out of sample (held-out workloads, never tuned on; data/experiments/holdout/)",
            "",
            "Median |error| / real floor over the points:",
            "",
            *_head("group", "points", *hnames),
        ]
        for g in t["holdout_summary"]:
            lines.append(
                f"| {g['group']} | {g['points']} | "
                + " | ".join(
                    f"{_pct(g['metrics'][n]['median_abs_error'])} / {_pct(g['metrics'][n]['floor'])}"
                    for n in hnames
                )
                + " |"
            )
        lines += ["", *_head("point", "group", *hnames)]
        for r in t["holdout"]:
            lines.append(
                f"| {r['point']} | {r['group']} | "
                + " | ".join(f"{_signed(r['error'].get(n))} ({_pct(r['floor'].get(n))})" for n in hnames)
                + " |"
            )
        if t.get("holdout_winners"):
            lines += [
                "",
                "Micro against mono on the held-out closed loops (real winner decisive outside the 95% "
                "intervals; "
                "predicted by the predictions' means):",
                "",
                *_head("point", *(f"{n} real / predicted" for n in WINNER_METRICS)),
            ]
            for w in t["holdout_winners"]:
                lines.append(f"| {w['point']} | " + " | ".join(_winner_marks(w)) + " |")
    if t.get("posthoc"):
        lines += [
            "",
            "## POST-HOC (not out of sample): the held-out runs re-simulated after they were seen",
            "",
            "Current code; `host_scale`: twins moved to each run's own host probe (else at the "
            "calibration's host speed). Median |error| / floor over the points:",
            "",
            *_head("file", "calibration", "host_scale", "points", *names),
        ]
        for r in t["posthoc"]:
            lines.append(
                f"| {r['file']} | {r['calibration']} | {r['host_scale']} | {r['points']} | "
                + " | ".join(f"{_pct(r['median_abs_error'][n])} / {_pct(r['floor'][n])}" for n in names)
                + " |"
            )
    return "\n".join(lines) + "\n"


def _head(*cells: str) -> list[str]:
    """A markdown table's header row and its separator."""
    return ["| " + " | ".join(cells) + " |", "|" + "---|" * len(cells)]


def _range(values: Sequence[float]) -> str:
    return f"{values[0]:.1f}-{values[1]:.1f}" if values else "unknown"


def _fmt2(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2f}"


def _winner_marks(w: Mapping[str, Any]) -> list[str]:
    """A winners row's "real / simulated" cell per metric, marked ok or WRONG where the real winner is
    decisive."""
    cells = []
    for n in WINNER_METRICS:
        c = w[n]
        mark = "" if c["agree"] is None else (" ok" if c["agree"] else " WRONG")
        cells.append(f"{c['real']} / {c['sim']}{mark}")
    return cells


def write_tables(t: Mapping[str, Any], folder: Path = OUT, name: str = "tables") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(json_safe(t), indent=1, sort_keys=True) + "\n")
    (folder / f"{name}.md").write_text(markdown(t))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.validation.extended", description=__doc__)
    parser.add_argument("stage", choices=["run", "saturation", "tables"])
    parser.add_argument(
        "--prefix", default=PREFIX, help="the matrix's experiment names' prefix (vx: the committed one)"
    )
    parser.add_argument("--variant", default="model", help="the closed_loop variant to tabulate")
    parser.add_argument("--folder", default=str(OUT))
    parser.add_argument("--name", default="tables")
    parser.add_argument(
        "--parts",
        nargs="*",
        default=None,
        choices=sorted(PARTS),
        help="run, saturation: these parts (saturation default: every part with its own saturation run)",
    )
    args = parser.parse_args(argv)
    try:
        renamed("vx_closed", args.prefix)
    except ValueError as exc:
        parser.error(str(exc))
    if args.stage == "run":
        if not args.parts:
            parser.error("run needs --parts")
        run_parts(args.parts, args.prefix)
        return 0
    if args.stage == "saturation":
        parts = args.parts if args.parts is not None else list(OWN_SATURATION)
        if unknown := sorted(set(parts) - set(OWN_SATURATION)):
            parser.error(f"saturation: {unknown} have no saturation run of their own")
        run_saturation(parts=parts, prefix=args.prefix)
        return 0
    t = build(args.variant, Path(args.folder), prefix=args.prefix)
    write_tables(t, Path(args.folder), args.name)
    print(markdown(t))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
