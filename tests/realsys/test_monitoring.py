"""The monitoring files: Prometheus scrapes every dtq container of each Compose file, and the Grafana
dashboard asks only for metrics the nodes export (realsys/metrics.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from realsys.config import MAX_NODES
from realsys.metrics import GcPauses, NodeMetrics

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def exported_names() -> set[str]:
    metrics = NodeMetrics("n1", "node", "mono")
    GcPauses(metrics)  # registers its histogram on the node's registry
    names = set()
    suffixes = {"histogram": ("_bucket", "_count", "_sum"), "counter": ("_total",), "info": ("_info",)}
    for family in metrics.registry.collect():  # labelled families have no samples before first use
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
    return names


def test_the_dashboard_asks_only_for_exported_metrics() -> None:
    dashboard = json.loads((DOCKER / "grafana" / "dtq.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bdtq_[a-z_]+", expr)}
    assert used, exprs
    missing = used - exported_names()
    assert not missing, missing
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("queue depth", "oldest pending", "jobs by state", "latency", "hop", "lease expiries"):
        assert topic in titles, topic


@pytest.mark.parametrize("design", ["mono", "micro"])
def test_prometheus_scrapes_every_dtq_container(design: str) -> None:
    compose = yaml.safe_load((DOCKER / f"compose.{design}.yml").read_text())
    services = compose["services"]
    nodes = {
        name
        for name, service in services.items()
        if str((service.get("environment") or {}).get("DTQ_METRICS_PORT", "")) == "9100"
    }
    assert len(nodes) == 6, nodes
    config = yaml.safe_load((DOCKER / "prometheus" / f"{design}.yml").read_text())
    (job,) = config["scrape_configs"]
    if design == "micro":
        targets = {t for group in job["static_configs"] for t in group["targets"]}
        assert targets == {f"{n}:9100" for n in nodes}
        assert {group["labels"]["design"] for group in job["static_configs"]} == {design}
    else:
        # any node count: every name a rendered file can hold (n1..MAX_NODES), found by DNS
        (sd,) = job["dns_sd_configs"]
        assert sd["port"] == 9100
        assert sd["names"] == [f"n{i}" for i in range(1, MAX_NODES + 1)]
        assert nodes <= set(sd["names"])
        relabels = {r["target_label"]: r for r in job["relabel_configs"]}
        assert relabels["node"]["source_labels"] == ["__meta_dns_name"]
        assert relabels["design"]["replacement"] == design
    prometheus = services["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]  # opt-in: fault runs start the nodes only
    assert f"./prometheus/{design}.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
