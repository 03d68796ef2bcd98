"""The fault tables: simulated beside real (local processes), and Compose beside local."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from lab.report.data import num
from lab.report.markdown import fmt, markdown_table
from lab.report.style import DESIGN_LABEL, design_key


def fault_name(row: Mapping[str, Any]) -> str:
    """'<fault> <target>'. The real injector's "kill" of Design A's worker process is the simulator's
    "kill_worker" of it, so the two share a name; a Design B node kill (the whole process) is not the
    simulator's kill of that node's worker runtime, so those stay apart."""
    fault, target = str(row["fault"]), str(row.get("target", ""))
    if fault == "kill" and target == "worker":
        fault = "kill_worker"
    return f"{fault} {target}".strip()


Point = tuple[str, str, float, float]  # (design, fault, lease s, heartbeat s)


def _by_point(rows: Sequence[Mapping[str, Any]]) -> dict[Point, list[Mapping[str, Any]]]:
    out: dict[Point, list[Mapping[str, Any]]] = {}
    for r in rows:
        out.setdefault((r["design"], fault_name(r), num(r["lease_s"]), num(r["heartbeat_s"])), []).append(r)
    return out


def _point_order(k: Point) -> tuple[int, str, float, float]:
    return (design_key(k[0]), k[1], k[2], k[3])


def _point_cells(k: Point) -> list[str]:
    return [DESIGN_LABEL.get(k[0], k[0]), k[1], fmt(k[2], 1), fmt(k[3], 1)]


def _median_cells(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Recovery, duplicates, lost and unavailable time: medians over a point's runs."""
    return [
        _median_cell(runs, "recovery_s", 1),
        _median_cell(runs, "duplicates", 0),
        _median_cell(runs, "lost", 0),
        _median_cell(runs, "unavailable_s", 1),
    ]


def table_faults(sim_rows: Sequence[Mapping[str, Any]], real_rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per (design, fault, lease, heartbeat). A real point run several times shows the median
    over its runs (`runs` column); a run whose throughput never came back counts as 'never'."""
    if not sim_rows and not real_rows:
        return "No fault data yet (`dtq sim faults --design D`, `dtq faults`).\n"
    sim, real = _by_point(sim_rows), _by_point(real_rows)
    body = []
    for k in sorted(set(sim) | set(real), key=_point_order):
        cells = _point_cells(k) + _median_cells(sim.get(k, [])) + _median_cells(real.get(k, []))
        body.append([*cells, str(len(real.get(k, [])))])
    header = ["design", "fault", "lease s", "heartbeat s", "sim recovery s", "sim dup", "sim lost"]
    header += ["sim unavail s", "real recovery s", "real dup", "real lost", "real unavail s", "real runs"]
    note = (
        "\nFrom data/faults/sim-{micro,mono}.json (`dtq sim faults`) and real-{micro,mono}.json "
        "(`dtq faults`) as they are; real values are medians over the runs of a point. 'never' = "
        "throughput not back to 90% before the trace's end (a median that falls on such a run), "
        "'-' = not run. The real injector's kill "
        "of A's worker is the simulator's kill_worker; a B node kill (the whole process) is not. "
        + ("No real fault runs yet.\n" if not real_rows else "\n")
    )
    return markdown_table(header, body) + note


def table_faults_compose(
    local_rows: Sequence[Mapping[str, Any]], compose_rows: Sequence[Mapping[str, Any]]
) -> str:
    """The same faults on the local process clusters and on Compose clusters: medians per point."""
    if not compose_rows:
        return "No Compose fault runs yet (`dtq faults run --backend compose`).\n"
    local, compose = _by_point(local_rows), _by_point(compose_rows)
    body = []
    for k in sorted(compose, key=_point_order):
        cells = _point_cells(k)
        for runs in (local.get(k, []), compose[k]):
            cells += [*_median_cells(runs), str(len(runs))]
        body.append(cells)
    header = ["design", "fault", "lease s", "heartbeat s"]
    for where in ("local", "compose"):
        header += [f"{where} recovery s", f"{where} dup", f"{where} lost", f"{where} unavail s", "runs"]
    note = (
        "\nFrom data/faults/real-{micro,mono}.json (local process clusters) and compose-{micro,mono}.json "
        "(`dtq faults run --backend compose`: docker kill / pause / stop+start / network disconnect); "
        "medians over the runs of a point, 'never' and '-' as above.\n"
    )
    return markdown_table(header, body) + note


def _median_cell(runs: Sequence[Mapping[str, Any]], col: str, digits: int) -> str:
    """Median over runs, 'never' (None: not recovered) ranked above every number, '-' when no runs."""
    if not runs:
        return "-"
    values = sorted((math.inf if r.get(col) is None else num(r.get(col))) for r in runs)
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return "never" if math.isinf(median) else fmt(median, digits)
