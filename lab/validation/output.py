"""The validation's tables on disk (data/validation/: points.csv, error_table.csv, winners.csv,
saturation.csv, summary.json) and their text for a terminal."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lab.validation.accuracy import (
    collect_points,
    error_table,
    point_rows,
    saturation_rows,
    saturation_winners,
    winner_rows,
    winner_summary,
)
from lab.validation.spec import Validation

DEFAULT_OUT = Path("data/validation")


def _csv_value(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        if rows:
            writer.writerow(list(rows[0]))
            for row in rows:
                writer.writerow([_csv_value(row[c]) for c in rows[0]])
    tmp.replace(path)
    return path


def json_safe(value: Any) -> Any:
    """`value` with string keys, and None for every non-finite float (JSON has no NaN or inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_safe(x) for k, x in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(x) for x in value]
    return value


def write_json(path: Path, value: Any) -> None:
    """`value` as indented JSON with sorted keys (json_safe first)."""
    path.write_text(json.dumps(json_safe(value), indent=1, sort_keys=True) + "\n")


def build_tables(v: Validation, root: Path | str, out: Path | str = DEFAULT_OUT) -> dict[str, Any]:
    """Writes points.csv, error_table.csv, winners.csv, saturation.csv and summary.json under `out`."""
    out = Path(out)
    points, _ = collect_points(v, root)
    tables = {
        "points": point_rows(points, v.bands),
        "error_table": error_table(points, v.bands),
        "winners": winner_rows(points, v.designs),
        "saturation": saturation_rows(v, root),
    }
    for name, rows in tables.items():
        write_csv(rows, out / f"{name}.csv")
    summary = {
        "validation": v.name,
        "calibration": v.calibration,
        "bands": list(v.bands),
        "points": len(points),
        "replications": v.replications,
        "winner_agreement": winner_summary(tables["winners"]),
        "error_table": tables["error_table"],
        "saturation": tables["saturation"],
        "saturation_winners": saturation_winners(tables["saturation"], v.designs),
    }
    write_json(out / "summary.json", summary)
    return {**tables, "summary": summary}


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.0f}%"


def format_tables(tables: Mapping[str, Any]) -> str:
    lines = ["saturation (requests/s): real vs sim"]
    for r in tables["saturation"]:
        lines.append(
            f"  {r['design']:5} {r['duration']:8} {r['mix']:7} real {r['real_rate']:7.1f}  "
            f"sim {r['sim_rate']:7.1f}  err {_pct(r['err'])}"
        )
    lines.append(
        "error table: |sim - real| / real, median [IQR] per band; floor = real run-to-run median dev"
    )
    header = f"  {'band':14} {'metric':10} {'n':>3}  {'median':>6} {'IQR':>13} {'bias':>6} {'floor':>6}"
    lines.append(header)
    for r in tables["error_table"]:
        iqr = f"[{_pct(r['q25_abs_err'])},{_pct(r['q75_abs_err'])}]"
        lines.append(
            f"  {r['band']:14} {r['metric']:10} {r['points']:>3}  {_pct(r['median_abs_err']):>6} {iqr:>13} "
            f"{_pct(r['median_signed_err']):>6} {_pct(r['floor_median_dev']):>6}"
        )
    agreement = tables["summary"]["winner_agreement"]
    lines.append(
        "winner (A vs B) agreement where the real winner is decisive: "
        + ", ".join(
            f"{m} {a['agree']}/{a['decisive']} (real ties {a['real_ties']})" for m, a in agreement.items()
        )
    )
    sat = tables["summary"]["saturation_winners"]
    lines.append(
        "by the real means at every shared point: "
        + ", ".join(f"{m} {a['agree_by_means']}/{a['ordered_by_means']}" for m, a in agreement.items())
        + f"; saturation winner: {sum(r['agree'] == 'True' for r in sat)}/{len(sat)} cells"
    )
    return "\n".join(lines)
