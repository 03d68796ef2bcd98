"""Where a run's latency tail comes from: each client request split by hop and by kind of time.

A run's requests (requests.csv.gz: per request its op, job, start and end on the load generator's
clock) are matched to the SERVER span that served them at the client-facing process (the gateway in
Design A, a node in Design B: `TaskQueue/SubmitJob`, `GetJobStatus`, `GetJobResult`), and that span's
descendants (parent_id links: the gateway's calls to the job, queue and result services). Each
request's latency is then cut into parts that add up to it exactly:

* `client_wait`: intended -> sent (a closed loop's client loop being late to send);
* `outside before`: sent -> the entry handler starts: the load generator's gRPC client, the
  transport, the server's gRPC threads and its event loop until it runs the handler;
* `outside after`: the entry handler returns -> the client has the answer: the server's gRPC
  threads sending it, the transport, and the load generator's loop until it wakes to record it
  (together the two are what no span sees; their split is as good as the clock alignment);
* `<role>:<hop> self`: each span's time not covered by its children (its handler's CPU, its awaits on
  storage and on its own event loop, and, for a span with children, the outbound transport).

The two clocks (the load generator's perf_counter from its run start, the spans' wall clock) are
aligned from the submits: a submit's span lies inside its request, so the offset lies in
[max(span.end - req.end), min(span.start - req.start)] over every submit; its midpoint is used.

`attribute` compares the requests above a percentile (the tail) with those near the median: the
mean of each part in each group, and each part's share of the tail's excess over the median.
`episodes` merges the tail requests' intervals: few long episodes holding many tail requests at once
mean a stall of a whole process or host, many short ones independent slow requests.

    python -m lab.validation.tails RUN_DIR SPANS [SPANS ...] [--json OUT]
(SPANS: a trace directory, a node's spans file, or a simulated run's spans.jsonl.)
"""

from __future__ import annotations

import argparse
import bisect
import gzip
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from model.results.runs import load_requests
from model.spans import SPAN_SUFFIX, SPANS_FILE, HopSpan, parse_spans

ENTRY_METHOD = {"submit": "SubmitJob", "status": "GetJobStatus", "result": "GetJobResult"}
ENTRY_ROLES = frozenset({"gateway", "node"})
WITNESS_FILE = "witness.json"  # lab/validation/stalls.py's events, in the run directory
EPS = 1e-4  # s: slack when matching a read's span inside its request on the aligned clock


@dataclass(frozen=True)
class Request:
    op: str
    job_id: str
    intended: float
    start: float
    end: float

    @property
    def latency(self) -> float:
        return self.end - self.intended


@dataclass
class Split:
    """One request's latency cut into parts (seconds) that add up to it."""

    request: Request
    parts: dict[str, float] = field(default_factory=dict)


def read_spans(paths: Iterable[Path | str]) -> list[HopSpan]:
    """The spans of trace directories (every *.spans.jsonl in them), spans files and simulated runs."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += (
                sorted(p.glob(f"*{SPAN_SUFFIX}"))
                or sorted(p.glob(f"*{SPAN_SUFFIX}.gz"))
                or sorted(p.glob(SPANS_FILE))
            )
        else:
            files.append(p)
    spans: list[HopSpan] = []
    for f in files:
        with _open_text(f) as fh:
            spans.extend(parse_spans(fh))
    return spans


def _open_text(path: Path) -> IO[str]:
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")


def read_witness(run_dir: Path | str) -> dict[str, Any]:
    """lab/validation/stalls.py's events of a run (RUN/witness.json, or .json.gz)."""
    base = Path(run_dir) / WITNESS_FILE
    path = base if base.exists() else base.with_name(WITNESS_FILE + ".gz")
    with _open_text(path) as fh:
        events: dict[str, Any] = json.load(fh)
    return events


def read_requests(run_dir: Path | str, after: float = 0.0) -> list[Request]:
    """The run's answered client requests (OK), intended at `after` s or later (the warm-up out)."""
    cols = load_requests(run_dir)
    out = []
    for op, status, job, it, st, en in zip(
        cols["op"],
        cols["status"],
        cols["job_id"],
        cols["intended_time"],
        cols["start_time"],
        cols["end_time"],
        strict=True,
    ):
        if status == "OK" and op in ENTRY_METHOD and job and np.isfinite(en) and it >= after:
            out.append(Request(str(op), str(job), float(it), float(st), float(en)))
    return out


def run_warmup(run_dir: Path | str) -> float:
    """The run's warm-up (its workload's `warmup`, s; 0 when its config does not say)."""
    try:
        cfg = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return 0.0
    return float(cfg.get("workload", {}).get("warmup", 0.0) or 0.0)


def _is_entry(span: HopSpan, op: str) -> bool:
    return span.kind == "SERVER" and span.role in ENTRY_ROLES and span.hop == ENTRY_METHOD[op]


def clock_bounds(requests: Sequence[Request], spans: Sequence[HopSpan]) -> tuple[float, float]:
    """The interval [lo, hi] that spans' clock - requests' clock lies in, from the submits (each job
    has one SubmitJob span, inside its request); lo > hi when no single offset fits them all."""
    submit_span = {s.job_id: s for s in spans if _is_entry(s, "submit")}
    lo, hi = -np.inf, np.inf
    diffs = []
    for r in requests:
        s = submit_span.get(r.job_id) if r.op == "submit" else None
        if s is None:
            continue
        lo, hi = max(lo, s.end - r.end), min(hi, s.start - r.start)
        diffs.append(hi)
    if not diffs:
        raise ValueError("no submit request has a SubmitJob span: are these the run's spans?")
    return float(lo), float(hi)


def clock_offset(requests: Sequence[Request], spans: Sequence[HopSpan]) -> float:
    """spans' clock - requests' clock: the middle of clock_bounds."""
    lo, hi = clock_bounds(requests, spans)
    if lo > hi:
        raise ValueError(f"no clock offset puts every submit's span inside its request ({lo:.6f} > {hi:.6f})")
    return (lo + hi) / 2


def _self_times(root: HopSpan, children: Mapping[str, list[HopSpan]], out: dict[str, float]) -> None:
    """Each span's time not covered by its children's union (clipped to it), by `role:hop self`."""
    kids = [k for k in children.get(root.span_id, ()) if k.kind == "SERVER"]
    covered, cur_s, cur_e = 0.0, None, None
    for k in sorted(kids, key=lambda k: k.start):
        s, e = max(k.start, root.start), min(k.end, root.end)
        if e <= s:
            continue
        if cur_e is None or s > cur_e:
            if cur_e is not None and cur_s is not None:
                covered += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
        _self_times(k, children, out)
    if cur_e is not None and cur_s is not None:
        covered += cur_e - cur_s
    key = f"{root.role}:{root.hop} self"
    out[key] = out.get(key, 0.0) + max(0.0, root.duration - covered)


def split_requests(requests: Sequence[Request], spans: Sequence[HopSpan]) -> tuple[list[Split], float]:
    """Every request whose entry span is found, cut into parts; and the clock offset used."""
    offset = clock_offset(requests, spans)
    entries: dict[tuple[str, str], list[HopSpan]] = defaultdict(list)
    children: dict[str, list[HopSpan]] = defaultdict(list)
    for s in spans:
        children[s.parent_id].append(s)
        for op in ENTRY_METHOD:
            if _is_entry(s, op):
                entries[(s.job_id, op)].append(s)
    starts = {}
    for key, lst in entries.items():
        lst.sort(key=lambda s: s.start)
        starts[key] = [s.start for s in lst]
    out = []
    for r in requests:
        key = (r.job_id, r.op)
        lst = entries.get(key, [])
        if not lst:
            continue
        a, b = r.start + offset - EPS, r.end + offset + EPS
        i = bisect.bisect_left(starts[key], a)
        if i >= len(lst) or lst[i].end > b:
            continue
        entry = lst[i]
        before = entry.start - offset - r.start
        parts = {
            "client_wait": r.start - r.intended,
            "outside before": before,
            "outside after": (r.end - r.start) - entry.duration - before,
        }
        _self_times(entry, children, parts)
        out.append(Split(r, parts))
    return out, offset


def episodes(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float, int]]:
    """Overlapping intervals merged: (start, end, how many intervals), in time order."""
    merged: list[list[float]] = []
    for s, e in sorted(intervals):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
            merged[-1][2] += 1
        else:
            merged.append([s, e, 1])
    return [(a, b, int(n)) for a, b, n in merged]


def _group_means(splits: Sequence[Split], keys: Sequence[str]) -> dict[str, float]:
    n = max(1, len(splits))
    return {k: sum(s.parts.get(k, 0.0) for s in splits) / n for k in keys}


def attribute(
    splits: Sequence[Split], tail_q: float = 99.0, mid: tuple[float, float] = (45.0, 55.0)
) -> dict[str, Any]:
    """The tail (latency above the tail_q percentile of the matched requests) against the middle
    (between the `mid` percentiles): per part its mean in ms in each group and its share of the
    tail's excess mean latency; by op; the tail's episodes."""
    if not splits:
        raise ValueError("no request matched a span")
    lat = np.array([s.request.latency for s in splits])
    p_tail = float(np.percentile(lat, tail_q))
    lo, hi = (float(np.percentile(lat, q)) for q in mid)
    tail = [s for s in splits if s.request.latency > p_tail]
    middle = [s for s in splits if lo <= s.request.latency <= hi]
    keys = sorted({k for s in splits for k in s.parts})
    mt, mm = _group_means(tail, keys), _group_means(middle, keys)
    excess = sum(mt.values()) - sum(mm.values())
    parts = {
        k: {
            "tail_ms": round(mt[k] * 1e3, 3),
            "mid_ms": round(mm[k] * 1e3, 3),
            "share_of_excess": round((mt[k] - mm[k]) / excess, 3) if excess > 0 else None,
        }
        for k in keys
    }
    eps = episodes([(s.request.start, s.request.end) for s in tail])
    by_op = {op: sum(1 for s in tail if s.request.op == op) for op in ENTRY_METHOD}
    all_by_op = {op: sum(1 for s in splits if s.request.op == op) for op in ENTRY_METHOD}
    return {
        "matched": len(splits),
        "p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 3),
        "p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 3),
        "p99_over_p50": round(float(np.percentile(lat, 99) / np.percentile(lat, 50)), 2),
        "tail_threshold_ms": round(p_tail * 1e3, 3),
        "tail_n": len(tail),
        "mid_n": len(middle),
        "tail_mean_ms": round(sum(mt.values()) * 1e3, 3),
        "mid_mean_ms": round(sum(mm.values()) * 1e3, 3),
        "parts": parts,
        "tail_by_op": by_op,
        "all_by_op": all_by_op,
        "tail_episodes": len(eps),
        "tail_episode_max_requests": max((n for *_, n in eps), default=0),
        "tail_episodes_longest_ms": sorted((round((b - a) * 1e3, 1) for a, b, _ in eps), reverse=True)[:5],
    }


def witness_cover(
    splits: Sequence[Split], events: Mapping[str, Sequence[Sequence[float]]], period: float = 0.002
) -> dict[str, list[float]]:
    """Per witness (lab/validation/stalls.py: loop, thread, gc, host), per request: the seconds of the
    request's interval during which that witness was stalled (its late wakes, each the interval from
    when its sleep should have ended, start + period, for its lateness; a GC pause from its start for
    its length), merged and clipped to the request. Event times are on the requests' clock."""
    out: dict[str, list[float]] = {}
    for name, evs in events.items():
        if name in ("gc_generation", "sched", "t0_monotonic"):
            continue
        lag = 0.0 if name == "gc" else period
        iv = sorted((float(t) + lag, float(t) + lag + float(ms) / 1e3) for t, ms in evs)
        merged = [(a, b, 0) for a, b, _ in episodes(iv)]
        starts = [a for a, _, _ in merged]
        cover = []
        for sp in splits:
            r = sp.request
            i = max(0, bisect.bisect_right(starts, r.start) - 1)
            c = 0.0
            while i < len(merged) and merged[i][0] < r.end:
                c += max(0.0, min(merged[i][1], r.end) - max(merged[i][0], r.start))
                i += 1
            cover.append(c)
        out[name] = cover
    return out


def witness_summary(
    splits: Sequence[Split], events: Mapping[str, Sequence[Sequence[float]]], res: Mapping[str, Any]
) -> dict[str, Any]:
    """For the tail and the middle of `attribute`'s result: per witness the mean ms a request spent
    while the witness was stalled, and the share of requests that overlap a stall at all."""
    cover = witness_cover(splits, events)
    lat = np.array([s.request.latency for s in splits])
    tail = lat > res["tail_threshold_ms"] / 1e3
    lo, hi = np.percentile(lat, 45), np.percentile(lat, 55)
    mid = (lat >= lo) & (lat <= hi)
    out: dict[str, Any] = {}
    for name, c in cover.items():
        arr = np.array(c)
        out[name] = {
            "events": len(events[name]),
            "tail_ms": round(float(arr[tail].mean()) * 1e3, 3) if tail.any() else None,
            "mid_ms": round(float(arr[mid].mean()) * 1e3, 3) if mid.any() else None,
            "tail_touched": round(float((arr[tail] > 0).mean()), 3) if tail.any() else None,
            "mid_touched": round(float((arr[mid] > 0).mean()), 3) if mid.any() else None,
        }
    return out


def sched_shares(
    samples: Mapping[str, Sequence[Sequence[float]]], windows: Sequence[tuple[float, float]]
) -> dict[str, dict[str, float]]:
    """Per process (or thread group), over the windows (s, on the requests' clock): thread-seconds per
    wall second it ran on a CPU (`run`), waited runnable for one (`wait`), and, for one thread,
    neither (`idle`: asleep on its loop's poll, or blocked; 1 - run - wait, floored at 0: a group of
    n threads has n), from cumulative schedstat samples [t, run_ns, wait_ns(, timeslices)]; with the
    timeslices also `wait_per_slice_ms`, the mean run-queue wait of one time on a CPU (a wake-up)."""
    out: dict[str, dict[str, float]] = {}
    for name, rows in samples.items():
        if len(rows) < 2:
            continue
        arr = np.asarray(rows, dtype=float)
        t, run, wait = arr[:, 0], arr[:, 1] / 1e9, arr[:, 2] / 1e9
        slices = arr[:, 3] if arr.shape[1] > 3 else None
        wall = r = w = n = 0.0
        for lo, hi in windows:
            a, b = max(lo, t[0]), min(hi, t[-1])
            if b <= a:
                continue
            wall += b - a
            r += float(np.interp(b, t, run) - np.interp(a, t, run))
            w += float(np.interp(b, t, wait) - np.interp(a, t, wait))
            if slices is not None:
                n += float(np.interp(b, t, slices) - np.interp(a, t, slices))
        if wall > 0:
            out[name] = {
                "run": round(r / wall, 3),
                "wait": round(w / wall, 3),
                "idle": round(max(0.0, 1 - (r + w) / wall), 3),
                "wall_s": round(wall, 3),
            }
            if slices is not None and n > 0:
                out[name]["wait_per_slice_ms"] = round(w / n * 1e3, 3)
    return out


def format_report(name: str, res: Mapping[str, Any]) -> str:
    lines = [
        f"{name}: {res['matched']} requests matched; p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms "
        f"(x{res['p99_over_p50']}); tail {res['tail_n']} (> {res['tail_threshold_ms']:.1f} ms, mean "
        f"{res['tail_mean_ms']:.1f}) vs middle {res['mid_n']} (mean {res['mid_mean_ms']:.1f})",
        f"  tail by op {res['tail_by_op']} of {res['all_by_op']}; tail episodes {res['tail_episodes']} "
        f"(most requests in one: {res['tail_episode_max_requests']}; "
        f"longest ms {res['tail_episodes_longest_ms']})",
        f"  {'part':42s} {'tail ms':>9s} {'mid ms':>9s} {'share':>7s}",
    ]
    rows = sorted(res["parts"].items(), key=lambda kv: -(kv[1]["tail_ms"] - kv[1]["mid_ms"]))
    for k, v in rows:
        share = "" if v["share_of_excess"] is None else f"{v['share_of_excess']:.0%}"
        lines.append(f"  {k:42s} {v['tail_ms']:9.2f} {v['mid_ms']:9.2f} {share:>7s}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.validation.tails", description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a run directory with requests.csv.gz")
    ap.add_argument("spans", nargs="+", help="trace directories or spans files of the run")
    ap.add_argument("--tail", type=float, default=99.0, help="tail percentile (default 99)")
    ap.add_argument(
        "--warmup", type=float, help="leave out requests intended before this (s; default: the run's)"
    )
    ap.add_argument("--json", help="write the attribution here")
    ap.add_argument("--witness", action="store_true", help="also the stall witnesses (RUN/witness.json)")
    args = ap.parse_args(argv)
    try:
        warmup = args.warmup if args.warmup is not None else run_warmup(args.run)
        requests, spans = read_requests(args.run, warmup), read_spans(args.spans)
        lo, hi = clock_bounds(requests, spans)
        splits, offset = split_requests(requests, spans)
        res = attribute(splits, args.tail)
        if args.witness:
            events = read_witness(args.run)
            res["witness"] = witness_summary(splits, events, res)
            if events.get("sched"):
                tail = [
                    (sp.request.start, sp.request.end)
                    for sp in splits
                    if sp.request.latency > res["tail_threshold_ms"] / 1e3
                ]
                eps = [(a, b) for a, b, _ in episodes(tail)]
                whole = [(min(sp.request.start for sp in splits), max(sp.request.end for sp in splits))]
                res["sched_tail"] = sched_shares(events["sched"], eps)
                res["sched_run"] = sched_shares(events["sched"], whole)
    except (OSError, ValueError) as e:
        print(f"tails: {e}", file=sys.stderr)
        return 2
    res = {
        "run": str(args.run),
        "spans": list(args.spans),
        "warmup_s": warmup,
        "clock_offset_s": round(offset, 6),
        "clock_offset_uncertainty_ms": round((hi - lo) * 1e3, 3),  # the before/after split's error bound
        **res,
    }
    print(format_report(Path(args.run).name, res))
    for name, sh in res.get("sched_tail", {}).items():
        whole = res["sched_run"].get(name, {})
        print(
            f"  sched {name:24s} over the tail episodes: run {sh['run']:.0%} wait {sh['wait']:.0%} idle "
            f"{sh['idle']:.0%}; whole run: run {whole.get('run', 0):.0%} wait {whole.get('wait', 0):.0%} "
            f"idle {whole.get('idle', 0):.0%}"
            + (
                f"; wait per slice {sh['wait_per_slice_ms']:.2f} / {whole['wait_per_slice_ms']:.2f} ms"
                if "wait_per_slice_ms" in sh and "wait_per_slice_ms" in whole
                else ""
            )
        )
    for name, w in res.get("witness", {}).items():
        print(
            f"  witness {name:6s} {w['events']:5d} events; ms stalled inside a request: tail {w['tail_ms']}, "
            f"middle {w['mid_ms']}; requests touched: tail {w['tail_touched']}, middle {w['mid_touched']}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
