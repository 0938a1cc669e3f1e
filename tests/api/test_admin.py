"""Admin auth: bearer token compared in constant time; reindex job lifecycle over HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

import service.deps
from tests.api.test_embed import assert_error
from tests.conftest import ADMIN_TOKEN, admin_headers


def wait_job(client: TestClient, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        resp = client.get(f"/admin/reindex/{job_id}", headers=admin_headers())
        assert resp.status_code == 200, resp.text
        job: dict[str, Any] = resp.json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job still {job['status']} ({job['stage']})"
        time.sleep(0.05)


def test_missing_or_wrong_token_is_401(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": ADMIN_TOKEN},
    ):
        resp = client.post("/admin/reindex", headers=headers)
        assert_error(resp, 401, "unauthorized")
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert_error(client.get("/admin/reindex/abc", headers=headers), 401, "unauthorized")


def test_token_is_compared_in_constant_time(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client()
    calls: list[tuple[bytes, bytes]] = []
    real = service.deps.secrets.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(service.deps.secrets, "compare_digest", spy)
    assert client.get("/admin/reindex/none", headers=admin_headers("nope")).status_code == 401
    assert client.get("/admin/reindex/none", headers=admin_headers()).status_code == 404
    assert calls == [(b"nope", ADMIN_TOKEN.encode()), (ADMIN_TOKEN.encode(), ADMIN_TOKEN.encode())]


def test_reindex_job_over_http(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    before = client.post("/recommend", json={"history": ["P0001"]}).json()["index_version"]
    resp = client.post("/admin/reindex", headers=admin_headers())
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "queued" and len(body["job_id"]) == 32
    job = wait_job(client, body["job_id"])
    assert job["status"] == "succeeded", job
    assert job["progress"] == 1.0 and job["stage"] == "done" and job["error"] is None
    assert job["collection"] != before and job["collection"].startswith("items_v")
    assert job["stats"]["items"] == 48 and job["stats"]["reused"] == 48 and job["stats"]["encoded"] == 0
    assert job["started_at"] and job["finished_at"]
    after = client.post("/recommend", json={"history": ["P0001"]}).json()["index_version"]
    assert after == job["collection"]


def test_unknown_job_is_404(make_client: Callable[..., TestClient]) -> None:
    err = assert_error(make_client().get("/admin/reindex/nope", headers=admin_headers()), 404, "job_not_found")
    assert err["details"] == {"job_id": "nope"}


def test_bad_reindex_body(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    resp = client.post("/admin/reindex", json={"catalog": "x"}, headers=admin_headers())
    assert_error(resp, 422, "invalid_request")


def test_admin_disabled_has_no_routes(make_client: Callable[..., TestClient]) -> None:
    client = make_client(enable_admin=False, admin_token=None)
    assert_error(client.post("/admin/reindex", headers=admin_headers()), 404, "not_found")
