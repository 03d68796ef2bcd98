"""The validation's tables: error by band, its trend over the runs, host speed and its scaling, the
scheduler model, saturation, and winner agreement.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lab.report.data import (
    NO_VALIDATION,
    PROBE_FIELDS,
    TREND_WINDOW_S,
    calibration_probe_medians,
    num,
    read_csv,
    validation_files,
)
from lab.report.markdown import fmt, markdown_table, pct
from lab.report.style import DESIGN_LABEL, design_key
from lab.validation.twin_sets import TWIN_SETS

BANDS = ("rho<=0.5", "0.5<rho<=0.8", "rho>0.8")  # the validation file's bands: [0.5, 0.8]


def table_validation_trend(trend: Sequence[tuple[float, int, float]]) -> str:
    if not trend:
        return NO_VALIDATION.capitalize() + ".\n"
    body = [
        [f"{start / 60:.0f}-{(start + TREND_WINDOW_S) / 60:.0f}", str(n), fmt(r, 2)] for start, n, r in trend
    ]
    note = (
        "\nFrom data/runs/real-*-validation.rate* and their sim- twins (lab/report/data.py "
        "validation_trend): the real runs grouped by start time, minutes from the first; sim/real = "
        "median over the group of the twin's request p50 over the real run's (twins from the main "
        "calibration).\n"
    )
    return markdown_table(["minutes", "runs", "sim/real p50"], body) + note


def table_validation(
    points: Sequence[Mapping[str, str]],
    errors: Sequence[Mapping[str, str]],
    folder: str = "validation",
) -> str:
    if not errors:
        return NO_VALIDATION.capitalize() + " (`dtq validate data/experiments/validation.yaml`).\n"
    cols = [c for c in errors[0] if c not in ("band", "metric", "points")]
    body = [
        [r.get("band", ""), r.get("metric", ""), r.get("points", "")] + [pct(num(r[c])) for c in cols]
        for r in errors
    ]
    note = (
        f"\nFrom data/{folder}/error_table.csv ({len(points)} points in points.csv): relative error "
        "(sim - real) / real in percent; floor = the real system's own run-to-run deviation.\n"
    )
    return markdown_table(["band", "metric", "points", *cols], body) + note


def table_host_scaling(data: Path) -> str:
    """The error table's headline cells for the twin sets of TWIN_SETS side by side: does moving each
    twin to its run's probed host speed help, and do the calibrations then agree?"""
    body = []

    for twin_set in TWIN_SETS:
        _, errors = validation_files(data, twin_set.folder)
        if not errors:
            continue
        cell = {(r["band"], r["metric"]): r for r in errors}
        what_ifs = ", ".join(f"{k} = {v}" for k, v in twin_set.sim_overrides.items())
        if twin_set.fair_scheduler:
            what_ifs = ", ".join(x for x in ("fair scheduler (measured slice)", what_ifs) if x)
        row = [twin_set.calibration, "yes" if twin_set.host_scale else "no", what_ifs or "FIFO per burst"]
        for metric in ("p50", "p99"):
            row.append(" / ".join(pct(num(cell.get((b, metric), {}).get("median_abs_err"))) for b in BANDS))
        low = cell.get(("rho<=0.5", "p50"), {})
        row.append(pct(num(low.get("median_signed_err"))))
        body.append(row)
    if not body:
        return NO_VALIDATION.capitalize() + ".\n"
    header = [
        "calibration",
        "moved to the run's host",
        "CPU sharing and what-ifs",
        "p50 |err|",
        "p99 |err|",
        "p50 bias, rho<=0.5",
    ]
    note = (
        "\nThe same real runs, one set of simulated twins per row (lab.validation.twin_sets.TWIN_SETS: "
        "data/validation/ and its subfolders, the others made by `dtq validate "
        "data/experiments/validation.yaml --twin-sets`): from the calibration made right before the runs "
        "(local), right after them (local-after), or one of two made back to back later (local-rounds-a, "
        "-b), each twin either on its calibration's host speed or moved to its run's probed speed "
        "(sim.hostscale.HostScale), and with the host's cores shared FIFO per CPU burst (the simulator's "
        "default) or as the kernel's fair scheduler does with the time slice the calibration measured "
        "(sim/cpu.py, cpu_slice). |err| = median over the band's points of |sim - real| / "
        "real, by band rho <= 0.5 / 0.5-0.8 / > 0.8. Were the probe to capture everything that differs "
        "between calibrations, the moved FIFO rows would agree with each other.\n"
    )
    return markdown_table(header, body) + note


def table_host_probe(
    trend: Sequence[tuple[float, int, Mapping[str, float]]], calibrations: Mapping[str, Mapping[str, Any]]
) -> str:
    """The host probe over the real runs, beside the calibrations' own probes."""
    rows: list[tuple[str, int, Mapping[str, float]]] = []
    for name, doc in calibrations.items():
        found = calibration_probe_medians(doc)
        if found:
            rows.append((f"{name} (calibration)", *found))
    for start, n, medians in trend:
        rows.append((f"runs {start / 60:.0f}-{(start + TREND_WINDOW_S) / 60:.0f} min", n, medians))
    body = [[when, str(n)] + [fmt(medians[k], 1) for k in PROBE_FIELDS] for when, n, medians in rows]
    if not body:
        return "No host probes yet (validation options host_probe: true).\n"
    header = ["when", "probes", "busy µs/call", "wake µs", "wake after 10 ms µs", "python µs/iter"]
    note = (
        "\nlab/calibration/hostprobe.py: the bare gRPC echo's server + client CPU per call with 16 in flight "
        "(busy), the server's extra CPU one call in flight back to back (wake) and after a 10 ms sleep, "
        "and a fixed Python loop (recorded, not used). Calibration rows: the median of the probes it "
        "took with each design's idle cluster up, before and after its measurements; run rows: the "
        "medians of the probes taken at each real run's start, by 4-minute window from the first run.\n"
    )
    return markdown_table(header, body) + note


def table_saturation(summary: Mapping[str, Any]) -> str:
    """The throughput test an open loop cannot give: the saturation rate, measured and predicted."""
    rows = summary.get("saturation") or []
    if not rows:
        return NO_VALIDATION.capitalize() + ".\n"
    body = [
        [
            DESIGN_LABEL.get(str(r["design"]), str(r["design"])),
            str(r["duration"]),
            str(r["mix"]),
            fmt(num(r["real_rate"])),
            fmt(num(r["sim_rate"])),
            pct(num(r["err"])),
        ]
        for r in sorted(rows, key=lambda r: (design_key(str(r["design"])), r["duration"], r["mix"]))
    ]
    winners = summary.get("saturation_winners") or []
    agree = sum(1 for w in winners if str(w.get("agree")) == "True")
    note = (
        "\nFrom data/validation/summary.json: requests/s at saturation, real (the closed-loop runs of "
        "the validation file's `saturation` entry) and simulated from the calibration for the same "
        "runs; err = (sim - real) / real. The design with the higher saturation rate is the same in the "
        f"simulator and the real system in {agree} of {len(winners)} cells.\n"
    )
    return markdown_table(["design", "duration", "mix", "real req/s", "sim req/s", "err"], body) + note


def scheduler_pairs() -> list[tuple[str, str, str]]:
    """(FIFO folder, fair-scheduler folder, calibration) for every fair twin set of
    lab.validation.twin_sets.TWIN_SETS and the set that differs from it only in sharing the cores FIFO."""
    return [
        (fifo.folder, fair.folder, fair.calibration)
        for fair in TWIN_SETS
        if fair.fair_scheduler
        for fifo in TWIN_SETS
        if not fifo.fair_scheduler
        and (fifo.calibration, fifo.host_scale, fifo.sim_overrides)
        == (fair.calibration, fair.host_scale, fair.sim_overrides)
    ]


def table_scheduler(data: Path) -> str:
    """The same real runs' twins with the cores shared FIFO per burst and as the kernel's fair
    scheduler does: saturation per cell, and design A's and B's median p50 error per band."""
    cells: dict[tuple[str, str, str], list[str]] = {}
    p50: dict[str, str] = {}
    header = ["design", "duration", "mix", "real req/s"]
    for fifo, fair, calibration in scheduler_pairs():
        sat_fifo = read_csv(data / fifo / "saturation.csv", missing_ok=True)
        sat_fair = {
            (r["design"], r["duration"], r["mix"]): r
            for r in read_csv(data / fair / "saturation.csv", missing_ok=True)
        }
        if not sat_fifo or not sat_fair:
            continue
        header += [f"err FIFO ({calibration})", f"err fair ({calibration})"]
        for r in sat_fifo:
            key = (r["design"], r["duration"], r["mix"])
            row = cells.setdefault(key, [fmt(num(r["real_rate"]))])
            row += [pct(num(r["err"])), pct(num(sat_fair.get(key, {}).get("err")))]
        for folder, kind in ((fifo, "FIFO"), (fair, "fair")):
            points = validation_files(data, folder)[0]
            for design in ("micro", "mono"):
                per_band = []
                for band in BANDS:
                    errs = [
                        abs(float(p["p50_err"]))
                        for p in points
                        if p["design"] == design and p["band"] == band
                    ]
                    per_band.append(pct(statistics.median(errs)) if errs else "-")
                p50[f"{DESIGN_LABEL.get(design, design)}, {kind} ({calibration})"] = " / ".join(per_band)
    if not cells:
        return "No data/validation/fair/ yet (`dtq validate data/experiments/validation.yaml --twin-sets`).\n"
    body = [
        [DESIGN_LABEL.get(d, d), du, mi, *row]
        for (d, du, mi), row in sorted(cells.items(), key=lambda kv: (design_key(kv[0][0]), kv[0][1:]))
    ]
    note = (
        "\nFrom saturation.csv and points.csv of data/validation/ (FIFO per CPU burst, the simulator's "
        "default) and data/validation/fair/ (the host's cores shared as the kernel's fair scheduler does, "
        "with the slice the calibration measured: sim/cpu.py, cpu_slice), and the same for local-after "
        "(after/, after-fair/): the same real runs, each twin moved to its run's probed host speed. "
        "Saturation err = (sim - real) / real; the second table is the median |p50 err| per design and "
        "band (rho <= 0.5 / 0.5-0.8 / > 0.8).\n\n"
    )
    return (
        markdown_table(header, body)
        + note
        + markdown_table(["twins", "p50 |err| by band"], [[name, errs] for name, errs in p50.items()])
    )


def table_winner_agreement(summary: Mapping[str, Any]) -> str:
    counts = summary.get("winner_agreement") or {}
    if not counts:
        return NO_VALIDATION.capitalize() + ".\n"
    body = [
        [
            metric,
            str(c.get("decisive", 0) + c.get("real_ties", 0)),
            str(c.get("real_ties", 0)),
            f"{c.get('agree', 0)} of {c.get('decisive', 0)}",
            f"{c.get('agree_by_means', 0)} of {c.get('ordered_by_means', 0)}",
        ]
        for metric, c in sorted(counts.items())
    ]
    note = (
        "\nFrom data/validation/summary.json (winners.csv per point): at each rate both designs ran, "
        "whether the simulator names the same winner as the real system. 'decided' counts points where "
        "the real means differ by more than their two 95% CI half-widths together; 'by means' compares "
        "the winners by the real means alone.\n"
    )
    header = ["metric", "points", "real ties", "sim right where decided", "sim right by means"]
    return markdown_table(header, body) + note
