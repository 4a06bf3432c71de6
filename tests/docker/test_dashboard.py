"""docker/grafana/tritone-dashboard.json and docker/prometheus.yml: valid, and every series the dashboard charts is one
the orchestrator (or Triton) actually exports — a renamed metric must not leave a silently empty panel."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

import orchestrator.services.metrics  # noqa: F401  (registers the service's series)
from orchestrator.routers.metrics import instrument

DOCKER = Path(__file__).resolve().parents[2] / "docker"
DASHBOARD = DOCKER / "grafana" / "tritone-dashboard.json"
# Triton's own /metrics (server docs, "Metrics"): the ones the dashboard charts.
TRITON_SERIES = {"nv_inference_request_success", "nv_inference_request_failure", "nv_inference_queue_duration_us",
                 "nv_gpu_utilization"}
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def _exported() -> set[str]:
    app = FastAPI()
    instrument(app)
    TestClient(app).get("/nothing")  # the instrumentator registers its series when the app first builds its stack
    names: set[str] = set()
    for registry in (REGISTRY, app.state.http_metrics):
        for family in registry.collect():
            names.add(family.name)
            names.update(sample.name for sample in family.samples)
    return names


def _charted() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"]]
    functions = {"sum", "rate", "max", "min", "avg", "by", "le", "histogram_quantile", "increase", "clamp_min",
                 "label_values", "job", "handler", "status", "state", "stage", "outcome", "model", "kind", "event",
                 "where", "server", "gpu_uuid"}
    found = set()
    for expr in exprs:
        for name in re.findall(r"\b([a-z_][a-z0-9_]*)\b", re.sub(r'"[^"]*"', "", expr)):
            if name not in functions and "_" in name and not name.startswith("$"):
                found.add(name)
    return found


def test_dashboard_charts_only_exported_series() -> None:
    exported = _exported()
    missing = []
    for name in sorted(_charted()):
        if name.startswith("nv_"):
            if name not in TRITON_SERIES:
                missing.append(name)
            continue
        base = next((name[: -len(s)] for s in _SUFFIXES if name.endswith(s)), name)
        if name not in exported and base not in exported:
            missing.append(name)
    assert not missing, f"the dashboard charts series nobody exports: {missing}"
    charted = _charted()
    for required in (
        "http_requests_total",
        "tritone_jobs",
        "tritone_queue_depth",
        "tritone_stage_duration_seconds_bucket",
        "tritone_triton_calls_total",
        "tritone_triton_failovers_total",
        "tritone_webhook_deliveries_total",
    ):
        assert required in charted, required


def test_dashboard_is_importable_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] == "Tritone"
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 12


def test_prometheus_config_scrapes_both() -> None:
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["tritone-orchestrator"]["static_configs"][0]["targets"] == ["orchestrator:8080"]
    assert jobs["tritone-orchestrator"]["authorization"]["type"] == "Bearer"
    assert jobs["triton"]["static_configs"][0]["targets"] == ["triton:8002"]
