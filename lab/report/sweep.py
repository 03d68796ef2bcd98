"""The sweep's tables: every point with CIs, A vs B per point, the headline, and `dtq bench`'s record."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from lab.report.data import facets_of, num, sorted_points
from lab.report.markdown import fmt, markdown_table, pm
from lab.report.style import DESIGN_LABEL, design_key
from model.results.stats import winner

PERCENTILES = ("p50", "p95", "p99")
WINNER_LABEL = {"a": "A", "b": "B", "tie": "tie", "": "?"}  # A = micro, B = mono


def table_experiment(rows: Sequence[Mapping[str, str]], name: str) -> str:
    if not rows:
        return f"No `{name}` sweep data yet (run `dtq experiment run data/experiments/{name}.yaml`).\n"
    header = ["design", "clients", "duration", "mix", "n", "done/s", "lat p50 ms", "lat p95 ms"]
    header += ["lat p99 ms", "done p50 ms", "done p99 ms", "err", "unfin"]
    body = []
    for r in sorted_points(rows):
        body.append(
            [
                DESIGN_LABEL.get(r["design"], r["design"]),
                r["concurrency"],
                r["duration"],
                r["mix"],
                f"{r['n']}/{r.get('planned', r['n'])}",
                pm(num(r["completed_per_s_mean"]), num(r["completed_per_s_ci95"]), 1),
                pm(num(r["latency_p50_ms_mean"]), num(r["latency_p50_ms_ci95"]), 2),
                pm(num(r["latency_p95_ms_mean"]), num(r["latency_p95_ms_ci95"]), 2),
                pm(num(r["latency_p99_ms_mean"]), num(r["latency_p99_ms_ci95"]), 2),
                pm(num(r["completion_p50_ms_mean"]), num(r["completion_p50_ms_ci95"]), 1),
                pm(num(r["completion_p99_ms_mean"]), num(r["completion_p99_ms_ci95"]), 1),
                r.get("errors", ""),
                r.get("unfinished_jobs", ""),
            ]
        )
    note = (
        f"\nFrom data/experiments/{name}/summary.csv: mean ± 95% Student-t CI half-width over the "
        "replications (n done/planned); done/s = jobs completed per second in the window; lat = request "
        "latency from intended send time; done = submit -> terminal.\n"
    )
    return markdown_table(header, body) + note


def table_wins(rows: Sequence[Mapping[str, str]]) -> str:
    """A vs B at every sweep point, on done/s, latency p50/p99 and submit -> done p50."""
    by_point: dict[tuple[str, str, str], dict[str, Mapping[str, str]]] = {}
    for r in rows:
        by_point.setdefault((r["duration"], r["mix"], r["concurrency"]), {})[r["design"]] = r
    metrics = (
        ("done/s", "completed_per_s", True, 1),
        ("lat p50", "latency_p50_ms", False, 2),
        ("lat p99", "latency_p99_ms", False, 2),
        ("done p50", "completion_p50_ms", False, 1),
    )
    body = []
    for (duration, mix, conc), pair in sorted(
        by_point.items(), key=lambda kv: (kv[0][0], kv[0][1], num(kv[0][2]))
    ):
        if "micro" not in pair or "mono" not in pair:
            continue
        a, b = pair["micro"], pair["mono"]
        row = [duration, mix, conc]
        for _, col, higher, _ in metrics:
            ra, rb = num(a[f"{col}_mean"]), num(b[f"{col}_mean"])
            w = WINNER_LABEL[
                winner(
                    ra, rb, higher_is_better=higher, a_ci=num(a[f"{col}_ci95"]), b_ci=num(b[f"{col}_ci95"])
                )
            ]
            ratio = rb / ra if ra > 0 and not math.isnan(rb) else math.nan
            row.append(f"{w} (B/A {fmt(ratio, 2)})")
        body.append(row)
    if not body:
        return "No sweep point with both designs yet.\n"
    header = ["duration", "mix", "clients", *(m[0] for m in metrics)]
    note = (
        "\nWinner per metric (A = micro, B = mono; 'tie' when the means differ by no more than the two "
        "95% CI half-widths together), with the ratio of B's mean to A's.\n"
    )
    return markdown_table(header, body) + note


def table_headline(rows: Sequence[Mapping[str, str]]) -> str:
    """At the highest concurrency: done/s and submit -> done p50 of every design per (duration, mix)."""
    if not rows:
        return "No sweep data yet.\n"
    top = max(num(r["concurrency"]) for r in rows)
    at_top = [r for r in rows if num(r["concurrency"]) == top]
    designs = sorted({r["design"] for r in at_top}, key=design_key)
    body = []
    for duration, mix in facets_of(at_top):
        cells = [duration, mix]
        for col, digits in (("completed_per_s", 1), ("completion_p50_ms", 1)):
            for design in designs:
                match = [
                    r for r in at_top if (r["design"], r["duration"], r["mix"]) == (design, duration, mix)
                ]
                r = match[0] if match else {}
                cells.append(pm(num(r.get(f"{col}_mean")), num(r.get(f"{col}_ci95")), digits))
        body.append(cells)
    header = ["duration", "mix"]
    header += [f"done/s {DESIGN_LABEL.get(d, d)}" for d in designs]
    header += [f"done p50 ms {DESIGN_LABEL.get(d, d)}" for d in designs]
    note = f"\nAt {top:g} closed-loop clients (wait mode), mean ± 95% CI over the replications.\n"
    return markdown_table(header, body) + note


def table_bench(data: Path) -> str:
    """data/bench/<host>.txt verbatim: `dtq bench` prints, it writes no file, so its output is kept
    with the command on its first line."""
    files = sorted((data / "bench").glob("*.txt"))
    if not files:
        return "No saved `dtq bench` output yet (data/bench/*.txt).\n"
    return "".join(
        f"From {f.relative_to(data.parent)}:\n\n```\n{f.read_text().rstrip()}\n```\n" for f in files
    )
