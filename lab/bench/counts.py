"""RPCs per job from every node's dtq_rpc_total counters, and Redis commands per job for Celery."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from lab.bench.clients import run_children
from realsys import cluster


def _rpc_totals(metrics_ports: Mapping[str, int]) -> dict[str, float]:
    """Sum of dtq_rpc_total over the nodes, by method (short name)."""
    totals: dict[str, float] = {}
    for port in metrics_ports.values():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        for family in text_string_to_metric_families(text):
            if family.name != "dtq_rpc":
                continue
            for sample in family.samples:
                if sample.name == "dtq_rpc_total":
                    method = sample.labels["method"].rsplit("/", 1)[-1]
                    totals[method] = totals.get(method, 0.0) + sample.value
    return totals


def metrics_ports(cluster_dir: Path) -> dict[str, int]:
    info = cluster.load(cluster_dir)
    return {
        n.name: int((Path(n.env["DTQ_DATA_DIR"]) / f"{n.name}.metrics").read_text())
        for n in info.nodes
        if int((Path(n.env["DTQ_DATA_DIR"]) / f"{n.name}.metrics").read_text()) > 0
    }


def _count_job(target_spec: Mapping[str, Any], jobs: int) -> dict[str, Any]:
    return {"kind": "count", "target": dict(target_spec), "clients": 16, "jobs": jobs}


def count_rpcs(target_spec: Mapping[str, Any], ports: Mapping[str, int], jobs: int) -> dict[str, float]:
    """RPCs per job by method, over `jobs` no-op jobs at 16 clients (one client process)."""
    before = _rpc_totals(ports)
    (result,), _ = run_children([_count_job(target_spec, jobs)])
    time.sleep(0.3)  # counters tick when an RPC ends: let the last reports finish
    after = _rpc_totals(ports)
    per_job = {m: (after.get(m, 0.0) - before.get(m, 0.0)) / jobs for m in after}
    return {m: v for m, v in sorted(per_job.items(), key=lambda kv: -kv[1]) if v > 0} | {
        "_not_succeeded": result["not_succeeded"]
    }


def count_redis_commands(target_spec: Mapping[str, Any], redis_url: str, jobs: int) -> dict[str, float]:
    client = redis.Redis.from_url(redis_url)

    def stats() -> dict[str, float]:
        raw = client.info("commandstats")
        return {k.removeprefix("cmdstat_"): float(v["calls"]) for k, v in raw.items()}

    before = stats()
    run_children([_count_job(target_spec, jobs)])
    time.sleep(0.3)
    after = stats()
    client.close()
    per_job = {m: (after.get(m, 0.0) - before.get(m, 0.0)) / jobs for m in after}
    return {m: v for m, v in sorted(per_job.items(), key=lambda kv: -kv[1]) if v > 0.005}
