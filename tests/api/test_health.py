"""/healthz, /readyz, /metrics, /docs and the OpenAPI document; startup failures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.encoding.fake import FakeEncoder
from service.errors import ConfigurationError
from service.main import create_app
from service.state import Components
from tests.conftest import TEXT_DIM


def test_health_and_ready(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.get("/healthz").json() == {"status": "ok"}
    resp = client.get("/readyz")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ready" and body["checks"] == {"models": True, "qdrant": True}
    assert body["degraded"] == []  # no Redis configured: nothing optional is missing
    assert body["index_version"].startswith("items_v") and body["model_version"] == "20260101-000000-tiny"


def test_not_ready_when_the_alias_is_gone(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    state = client.app.state.recsvc  # type: ignore[attr-defined]
    from qdrant_client import models

    state.store.client.update_collection_aliases(
        change_aliases_operations=[models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name="items"))]
    )
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["checks"]["qdrant"] is False and "alias" in resp.json()["detail"]


def test_metrics_exposition(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    req = {"history": ["P0001"], "k": 3}
    client.post("/recommend", json=req)
    client.post("/recommend", json=req)
    client.post("/recommend", json={"history": ["NOPE"]})
    client.get("/admin/reindex/some-id")  # 401, counted under the route template
    text = client.get("/metrics").text
    assert 'recsvc_requests_total{method="POST",route="/recommend",status="200"} 2.0' in text
    assert 'recsvc_requests_total{method="POST",route="/recommend",status="422"} 1.0' in text
    assert 'route="/admin/reindex/{job_id}",status="401"' in text
    assert "recsvc_cache_hits_total 1.0" in text and "recsvc_cache_misses_total 1.0" in text
    assert "recsvc_index_size 48.0" in text
    assert "recsvc_request_latency_seconds_bucket" in text


def test_docs_and_openapi(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    for path in ("/embed", "/recommend", "/admin/reindex", "/admin/reindex/{job_id}", "/healthz", "/readyz"):
        assert path in spec["paths"]
    schemas = spec["components"]["schemas"]
    assert schemas["RecommendRequest"]["examples"] and schemas["EmbedRequest"]["examples"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_unknown_route_uses_the_error_shape(make_client: Callable[..., TestClient]) -> None:
    resp = make_client().get("/nope")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


def test_start_without_artifacts_names_the_command(make_settings: Callable[..., object], tmp_path: Path) -> None:
    settings = make_settings(artifacts_dir=tmp_path / "empty")
    app = create_app(settings, components=Components(encoder=FakeEncoder(dim=TEXT_DIM)))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="make demo-build"), TestClient(app):
        pass
