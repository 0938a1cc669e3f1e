"""deploy/grafana/recsvc.json and deploy/prometheus/alerts.yml: valid, and every metric (and label)
they name is exported by the service (the app is built, exercised and its /metrics read)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.api.test_admin import wait_job
from tests.conftest import admin_headers

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "recsvc.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

# Series Prometheus writes itself for every scrape target (not exported by any service).
PROMETHEUS_SERIES = {"up"}
# Labels Prometheus attaches (target labels) or histograms have.
PROMETHEUS_LABELS = {"job", "instance", "le"}
PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
}  # fmt: skip
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
    "summary": ("", "_count", "_sum", "_created"),
}


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression refers to."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # strings
    labels: set[str] = set()
    for block in re.findall(r"\{([^}]*)\}", e):
        labels |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", block))
    e = re.sub(r"\{[^}]*\}", " ", e)
    for block in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", e):
        labels |= {w.strip() for w in block.split(",") if w.strip()}
    e = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)  # range selectors
    e = re.sub(r"\$\w+", " ", e)  # Grafana variables
    metrics = set()
    for name, call in re.findall(r"([A-Za-z_:][\w:]*)\s*(\()?", re.sub(r"\b\d+(?:\.\d+)?(?:e-?\d+)?\b", " ", e)):
        if not call and name not in PROMQL_KEYWORDS:
            metrics.add(name)
    return metrics, labels


def dashboard_queries(dash: dict[str, Any]) -> Iterator[str]:
    def walk(panels: list[dict[str, Any]]) -> Iterator[str]:
        for p in panels:
            yield from (t["expr"] for t in p.get("targets", []))
            yield from walk(p.get("panels", []))

    yield from walk(dash["panels"])
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"])
            assert m, var["query"]
            yield f"sum by ({m.group(2)}) ({m.group(1)})"


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


@pytest.fixture
def metrics_text(
    make_client: Callable[..., TestClient], redis_url: str, redis_prefix: str
) -> tuple[set[str], set[str]]:
    # with Redis configured (a real redis-server) so the readiness gauge recsvc_degraded{component} exists
    client = make_client(redis={"url": redis_url, "key_prefix": redis_prefix})
    body = {"history": ["P0001", "P0002"], "k": 3}
    for _ in range(2):  # a miss, then a hit
        assert client.post("/recommend", json=body).status_code == 200
    body = {"history": ["P0001", {"item": {"title": "a text item"}}], "k": 3}
    assert client.post("/recommend", json=body).status_code == 200  # the interactive encoder lane
    client.post("/search", json={"query": "hair"})
    client.post("/embed", json={"items": [{"text": "a"}]})
    client.post("/recommend", json={"history": []})  # a 4xx
    client.get("/readyz")
    job = client.post("/admin/reindex", headers=admin_headers()).json()["job_id"]
    assert wait_job(client, job)["status"] == "succeeded"
    text = client.get("/metrics").text
    names: set[str] = set()
    labels: set[str] = set()
    for fam in text_string_to_metric_families(text):
        names |= {fam.name + s for s in SUFFIXES.get(fam.type, ("",))}
        for sample in fam.samples:
            names.add(sample.name)
            labels |= set(sample.labels)
    return names, labels


def _check(exprs: list[str], exported: tuple[set[str], set[str]], where: str) -> set[str]:
    names, labels = exported
    used: set[str] = set()
    for expr in exprs:
        metrics, expr_labels = promql_names(expr)
        assert metrics, f"{where}: no metric in {expr!r}"
        unknown = metrics - names - PROMETHEUS_SERIES
        assert not unknown, f"{where}: {sorted(unknown)} not exported by the service (expr {expr!r})"
        bad_labels = expr_labels - labels - PROMETHEUS_LABELS
        assert not bad_labels, f"{where}: labels {sorted(bad_labels)} not on any exported series (expr {expr!r})"
        used |= metrics
    return used


def test_promql_name_extraction() -> None:
    metrics, labels = promql_names(
        'histogram_quantile(0.99, sum by (le, route) (rate(recsvc_request_latency_seconds_bucket{job="x", '
        'route=~"/a|/b"}[5m]))) > 1 and on(instance) up == 0'
    )
    assert metrics == {"recsvc_request_latency_seconds_bucket", "up"}
    assert labels == {"le", "route", "job", "instance"}


def test_dashboard_is_valid_and_uses_exported_metrics(metrics_text: tuple[set[str], set[str]]) -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 30
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] < 24 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if p["type"] != "row":
            assert p["targets"] and p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
    exprs = list(dashboard_queries(dash))
    used = _check(exprs, metrics_text, "dashboard")
    joined = "\n".join(exprs)
    # what the dashboard is for: request rate, latency quantiles, errors, shedding, reindex jobs, cache hits
    assert "recsvc_requests_total" in used and "recsvc_request_latency_seconds_bucket" in used
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}" in joined
    assert 'status=~"5.."' in joined and 'status=~"503|429"' in joined
    assert {"recsvc_reindex_total", "recsvc_cache_hits_total", "recsvc_cache_misses_total"} <= used
    # the encoder engine, deadlines and readiness (issues 20, 25): queue, shedding, drops, batch sizes,
    # abandoned requests, degraded components, and /recommend latency per mode
    assert {
        "recsvc_encoder_queue_texts",
        "recsvc_encoder_shed_requests_total",
        "recsvc_encoder_shed_texts_total",
        "recsvc_encoder_dropped_requests_total",
        "recsvc_encoder_batch_texts_bucket",
        "recsvc_requests_abandoned_total",
        "recsvc_degraded",
        "recsvc_recommend_latency_seconds_bucket",
    } <= used
    assert "sum by (le, mode)" in joined and "sum by (le, lane)" in joined


def test_alerts_are_valid_and_use_exported_metrics(metrics_text: tuple[set[str], set[str]]) -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for r in rules:
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, r["alert"]
        assert r["labels"]["severity"] in ("page", "ticket") and r["annotations"]["summary"], r["alert"]
        if "for" in r:
            assert re.fullmatch(r"\d+[smh]", r["for"]), r["alert"]
    used = _check([r["expr"] for r in rules], metrics_text, "alerts")
    exprs = {r["alert"]: r["expr"] for r in rules}
    # error rate, latency, readiness, reindex failures
    assert 'status=~"5.."' in exprs["RecsvcHighErrorRate"]
    assert "histogram_quantile" in exprs["RecsvcHighLatency"]
    assert 'route="/readyz"' in exprs["RecsvcNotReady"]
    assert 'status="failed"' in exprs["RecsvcReindexFailed"]
    assert "recsvc_reindex_total" in used
    assert "recsvc_encoder_shed_requests_total" in exprs["RecsvcEncoderShedding"]
    assert "recsvc_degraded" in exprs["RecsvcDegraded"]
    assert "recsvc_encoder_shed_requests_total" in used and "recsvc_degraded" in used


def test_a_misspelled_metric_is_caught(metrics_text: tuple[set[str], set[str]]) -> None:
    with pytest.raises(AssertionError, match="not exported"):
        _check(["rate(recsvc_request_total[5m])"], metrics_text, "probe")
    with pytest.raises(AssertionError, match="labels"):
        _check(["sum by (colour) (rate(recsvc_requests_total[5m]))"], metrics_text, "probe")
