"""Reading data/ for the paper: the sweep's summary.csv, the fault rows, the validation's tables,
the calibration's samples, and trends over the runs' start times.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from lab.report.style import design_key

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO_ROOT / "data"
DEFAULT_EXPERIMENT = "seed_plan"
NO_VALIDATION = "no validation data yet"


def read_csv(path: Path, missing_ok: bool = False) -> list[dict[str, str]]:
    if missing_ok and not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(value: object) -> float:
    """A CSV/JSON cell as a float; '' / None / junk -> NaN (a metric a run did not record)."""
    if value is None or value == "":
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def experiment_rows(data: Path, name: str = DEFAULT_EXPERIMENT) -> list[dict[str, str]]:
    """data/experiments/<name>/summary.csv rows with at least one replication on disk (the runner
    lists every planned point, also those not run yet)."""
    path = data / "experiments" / name / "summary.csv"
    return [r for r in read_csv(path, missing_ok=True) if num(r.get("n")) > 0]


def fault_rows(data: Path, kind: str) -> list[dict[str, Any]]:
    """data/faults/<kind>-micro.json and <kind>-mono.json rows (kind: sim, real or compose). Other files there
    (e.g. real-<design>-open.json, an open-loop variant) are another workload and are not mixed in."""
    rows: list[dict[str, Any]] = []
    for path in [data / "faults" / f"{kind}-{d}.json" for d in ("micro", "mono")]:
        if not path.is_file():
            continue
        loaded = json.loads(path.read_text())
        if isinstance(loaded, list):
            rows.extend(r for r in loaded if isinstance(r, dict))
    return rows


def validation_files(
    data: Path, folder: str = "validation"
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(points.csv, error_table.csv) rows from data/<folder>/, each empty when absent."""
    root = data / folder
    return read_csv(root / "points.csv", missing_ok=True), read_csv(root / "error_table.csv", missing_ok=True)


def calibration_samples(calibration: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Every empirical distribution in a calibration's `parameters`, by dotted key (service.node.X)."""
    params = calibration.get("parameters", {})
    out: dict[str, np.ndarray] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            if value.get("kind") == "empirical" and isinstance(value.get("samples"), list):
                out[prefix] = np.asarray(value["samples"], dtype=np.float64)
                return
            for key, child in value.items():
                visit(f"{prefix}.{key}" if prefix else str(key), child)

    visit("", params)
    return out


def sorted_points(rows: Sequence[Mapping[str, str]]) -> list[Mapping[str, str]]:
    return sorted(
        rows, key=lambda r: (r["duration"], r["mix"], design_key(r["design"]), num(r["concurrency"]))
    )


AFTER_FOLDER = "validation/after"
TREND_WINDOW_S = 240.0  # width of the run-start windows in table_validation_trend
T = TypeVar("T")


def _started(config: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(config["started_at"]).replace("Z", "+00:00"))


def _windows(items: Sequence[tuple[datetime, T]], window: float) -> list[tuple[float, list[T]]]:
    """`items` grouped by `window`-second windows of time from the earliest: (window start s, items)."""
    if not items:
        return []
    first = min(t for t, _ in items)
    groups: dict[int, list[T]] = {}
    for t, item in items:
        groups.setdefault(int((t - first).total_seconds() // window), []).append(item)
    return [(k * window, v) for k, v in sorted(groups.items())]


def validation_trend(runs: Path, window: float = TREND_WINDOW_S) -> list[tuple[float, int, float]]:
    """Per window of real run start times (s from the first run): (window start, runs, median of
    sim p50 / real p50 over the validation's load points and their simulated twins). A host that
    drifts while the real runs are made shows as a trend here; a steady offset does not."""
    ratios: list[tuple[datetime, float]] = []
    for real in sorted(runs.glob("real-*-validation.rate*")):
        twin = runs / ("sim-" + real.name.partition("-")[2]) / "summary.json"
        if not (twin.is_file() and (real / "summary.json").is_file()):
            continue
        started = _started(json.loads((real / "config.json").read_text()))
        real_p50 = json.loads((real / "summary.json").read_text())["latency_ms"]["all"]["p50"]
        sim_p50 = json.loads(twin.read_text())["latency_ms"]["all"]["p50"]
        if real_p50 and real_p50 > 0:
            ratios.append((started, sim_p50 / real_p50))
    return [(start, len(v), float(np.median(v))) for start, v in _windows(ratios, window)]


def host_probe_trend(runs: Path, window: float = TREND_WINDOW_S) -> list[tuple[float, int, dict[str, float]]]:
    """Per window of real validation run start times: (start s, runs, median probe fields)."""
    probes: list[tuple[datetime, Mapping[str, Any]]] = []
    for real in sorted(runs.glob("real-*-validation*")):
        config_path = real / "config.json"
        if not config_path.is_file():
            continue
        config = json.loads(config_path.read_text())
        probe = config.get("parameters", {}).get("host_probe")
        if probe:
            probes.append((_started(config), probe))
    return [
        (start, len(v), {key: float(np.median([num(p.get(key)) for p in v])) for key in PROBE_FIELDS})
        for start, v in _windows(probes, window)
    ]


PROBE_FIELDS = ("busy_us", "wake_us", "wake_gap_us", "python_us")


def calibration_probe_medians(doc: Mapping[str, Any]) -> tuple[int, dict[str, float]] | None:
    """(probes, field-by-field median) over every host probe a calibration took, or None."""
    probes = [p for group in (doc.get("host_probe") or {}).values() for p in group]
    if not probes:
        return None
    return len(probes), {k: float(np.median([num(p.get(k)) for p in probes])) for k in PROBE_FIELDS}


def validation_summary(data: Path) -> dict[str, Any]:
    path = data / "validation" / "summary.json"
    loaded = json.loads(path.read_text()) if path.is_file() else {}
    return loaded if isinstance(loaded, dict) else {}


def facets_of(rows: Sequence[Mapping[str, str]]) -> list[tuple[str, str]]:
    return sorted({(r["duration"], r["mix"]) for r in rows})


def facet_title(facet: tuple[str, str]) -> str:
    """'no-op jobs, submit-only mix' for ("noop", "submit"): a (duration, mix) facet in words."""
    duration = {"noop": "no-op", "exp50ms": "50 ms"}.get(facet[0], facet[0])
    mix = {"submit": "submit-only", "mixed": "mixed"}.get(facet[1], facet[1])
    return f"{duration} jobs, {mix} mix"
