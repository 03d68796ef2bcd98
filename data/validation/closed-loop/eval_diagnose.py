"""The diagnose lines of diagnose-closed-reads-2026-12-07.jsonl (real closed loops, host-probed)
against their twins from a calibration (argv[1]), as is and with wakeup_warm_handover: per point
served/s, p50, p95, p99 and node CPU per request, and the median |error| beside the replications'
floor. Each twin is moved to the field-by-field median of its design's probes (one probe is noisy).
Run from the repository root: .venv/bin/python data/validation/closed-loop/eval_diagnose.py CAL"""

import json
import sys
import warnings
from pathlib import Path

import numpy as np

from lab.diagnose import simulated
from model.results.runs import load_workload
from sim.hostscale import median_probe

HERE = Path("data/validation/closed-loop")
VARIANTS = {"as is": {}, "warm": {"wakeup_warm_handover": True}}


def row(out: dict) -> list[float]:
    lat = out["latency_ms"]["all"]
    return [out["served_per_s"], lat["p50"], lat["p95"], lat["p99"], out["cpu_ms_per_request"]]


def main(calibration: str) -> None:
    warnings.simplefilter("ignore")  # placeholder costs: `dtq sim params` names them
    with open(HERE / "diagnose-closed-reads-2026-12-07.jsonl") as f:
        lines = [json.loads(line) for line in f if line.startswith("{")]
    outs = [line for line in lines if line["out"]]
    probes: dict[str, list] = {}
    points: dict[tuple[str, int], list] = {}
    for line in outs:
        probes.setdefault(line["out"]["design"], []).append(line["out"]["host_probe"])
        points.setdefault((line["out"]["design"], line["clients"]), []).append(line["out"])
    host = {d: median_probe(ps) for d, ps in probes.items()}
    errors: dict[str, list] = {v: [] for v in VARIANTS}
    spreads = []
    for (design, clients), reps in sorted(points.items()):
        real = np.array([row(o) for o in reps])
        mean = real.mean(axis=0)
        spreads.append(np.median(np.abs(real - mean) / mean, axis=0))
        workload = load_workload(HERE / "workloads" / f"closed-reads-{clients}.yaml")
        print(design, clients, "real", " ".join(f"{x:.1f}" for x in mean), "reps", len(reps))
        for name, overrides in VARIANTS.items():
            twins = [
                row(
                    simulated(
                        design, 0, "submit", 4, calibration, "sqlite", overrides, workload, host[design]
                    )
                )
                for _ in reps
            ]
            twin = np.mean(twins, axis=0)
            err = (twin - mean) / mean
            errors[name].append(err)
            print("   ", name, " ".join(f"{x:.1f}" for x in twin), "err", " ".join(f"{x:+.2f}" for x in err))
    print("floor", " ".join(f"{x:.3f}" for x in np.median(spreads, axis=0)))
    for name in VARIANTS:
        print(name, "median|err|", " ".join(f"{x:.3f}" for x in np.median(np.abs(errors[name]), axis=0)))


if __name__ == "__main__":
    main(sys.argv[1])
