"""The reindex lease: renewed while a job runs, abandoned jobs found and cleaned within one lease,
and cancel (on this worker, or from another one through the job store); real Redis and in-process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis
from fastapi.testclient import TestClient

from service.encoding.fake import FakeEncoder
from service.main import create_app
from service.state import Components
from service.stores.jobs import Job, RedisJobStore, utc_now
from tests.api.test_admin import wait_job
from tests.api.test_embed import assert_error
from tests.conftest import TEXT_DIM, TinyArtifacts, admin_headers, make_catalog, write_jsonl

pytestmark = pytest.mark.integration


@pytest.fixture(params=["redis", "in-process"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "in-process":
        return {"redis": {"url": None}}
    return {
        "redis": {"url": request.getfixturevalue("redis_url"), "key_prefix": request.getfixturevalue("redis_prefix")}
    }


def big(tiny: TinyArtifacts, tmp_path: Path, n: int = 4000) -> str:
    write_jsonl(tmp_path / "big.jsonl", tiny.catalog + make_catalog(n, seed=7, prefix="N"))
    return "big.jsonl"


def start(client: TestClient, **body: Any) -> str:
    resp = client.post("/admin/reindex", json=body, headers=admin_headers())
    assert resp.status_code == 202, resp.text
    job_id: str = resp.json()["job_id"]
    return job_id


class SlowEncoder(FakeEncoder):
    """The FakeEncoder (same vectors) taking 0.1 s per batch, in the batcher's thread: a reindex
    of N new items lasts at least N/64 * 0.1 s on any machine."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(0.1)
        return super().encode(texts)


def test_lease_is_renewed_while_the_job_runs(
    make_settings: Callable[..., Any], backend: dict[str, Any], tiny_artifacts: TinyArtifacts, tmp_path: Path
) -> None:
    """Lease 3 s, a job of at least 12000/64 * 0.1 = 18.8 s: every other start meanwhile is a 409
    (the lease never lapsed), and the job succeeds. (A 2 s lease lapsed once on a machine at load
    ~3.3, when the event loop that renews it stalled for over a second; the default lease is 15 s.)"""
    app = create_app(
        make_settings(reindex_lease_s=3.0, **backend), components=Components(encoder=SlowEncoder(TEXT_DIM))
    )
    with TestClient(app) as client:
        job_id = start(client, catalog_path=big(tiny_artifacts, tmp_path, 12000))
        refused = 0
        while (job := client.get(f"/admin/reindex/{job_id}", headers=admin_headers()).json())["status"] in (
            "queued",
            "running",
        ):
            resp = client.post("/admin/reindex", json={"force": True}, headers=admin_headers())
            if resp.status_code == 202:
                # The job finished between the GET above and this POST: the lease was released by a
                # finished job, not lapsed under a running one.
                job = client.get(f"/admin/reindex/{job_id}", headers=admin_headers()).json()
                assert job["status"] == "succeeded", job
                break
            assert_error(resp, 409, "reindex_in_progress")
            refused += 1
            assert refused < 1000, job
            time.sleep(0.2)
        assert job["status"] == "succeeded", job
        assert job["stats"]["seconds"] > 4 * 3.0
        assert refused > 5


def test_dead_owner_is_abandoned_within_one_lease(
    make_client: Callable[..., TestClient], backend: dict[str, Any]
) -> None:
    """What a worker killed mid-job leaves: its lease (not renewed), a running job record and a
    partial collection. While the lease lasts a start is a 409; after it the job reads
    failed/abandoned, its collection is gone and a new reindex runs."""
    lease = 2.0
    client = make_client(reindex_lease_s=lease, **backend)
    state = client.app.state.recsvc  # type: ignore[attr-defined]
    portal = client.portal  # type: ignore[attr-defined]
    served = state.store.snapshot.collection
    snap = state.store.snapshot
    partial = state.store.index.build(
        snap.items[:10], snap.text_vectors[:10], snap.seqrec_vectors[:10], metadata={"job_id": "dead-job"}
    )
    assert portal.call(state.jobs.acquire_reindex_lock, "dead-job", lease)
    dead = Job(id="dead-job", status="running", stage="indexing", progress=0.5, started_at=utc_now(), owner="gone")
    portal.call(state.jobs.save_job, dead)
    t0 = time.monotonic()

    err = assert_error(client.post("/admin/reindex", headers=admin_headers()), 409, "reindex_in_progress")
    assert err["details"]["job_id"] == "dead-job"
    assert client.get("/admin/reindex/dead-job", headers=admin_headers()).json()["status"] == "running"
    assert partial in state.store.index.collections()
    while time.monotonic() - t0 < lease + 0.2:
        time.sleep(0.1)
    job = client.get("/admin/reindex/dead-job", headers=admin_headers()).json()
    assert job["status"] == "failed" and job["stage"] == "abandoned" and "gone" in job["error"], job
    assert state.store.index.collections() == [served]
    assert client.post("/recommend", json={"history": ["P0001"]}).json()["index_version"] == served
    assert wait_job(client, start(client))["status"] == "succeeded"
    assert_error(client.post("/admin/reindex/dead-job/cancel", headers=admin_headers()), 409, "job_finished")


def test_cancel_a_running_job(
    make_client: Callable[..., TestClient], backend: dict[str, Any], tiny_artifacts: TinyArtifacts, tmp_path: Path
) -> None:
    client = make_client(**backend)
    state = client.app.state.recsvc  # type: ignore[attr-defined]
    before = state.store.index.collections()
    served = state.store.snapshot.collection
    job_id = start(client, catalog_path=big(tiny_artifacts, tmp_path))
    deadline = time.monotonic() + 60
    while (job := client.get(f"/admin/reindex/{job_id}", headers=admin_headers()).json())["stage"] != "indexing":
        assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.02)
    resp = client.post(f"/admin/reindex/{job_id}/cancel", headers=admin_headers())
    assert resp.status_code == 200, resp.text
    job = resp.json()
    assert job["status"] == "cancelled" and job["error"] == "cancelled by an admin request", job
    assert job["stage"].startswith("cancelled during")
    assert state.store.index.collections() == before  # the partial collection is gone
    assert state.store.index.current_collection() == served
    assert client.post("/recommend", json={"history": ["N0001"]}).status_code == 422  # never went live
    assert_error(client.post(f"/admin/reindex/{job_id}/cancel", headers=admin_headers()), 409, "job_finished")
    assert_error(client.post("/admin/reindex/nope/cancel", headers=admin_headers()), 404, "job_not_found")
    assert wait_job(client, start(client))["status"] == "succeeded"  # the lease was released
    assert 'recsvc_reindex_total{status="cancelled"} 1.0' in client.get("/metrics").text


def test_cancel_from_another_worker_through_redis(
    make_settings: Callable[..., Any],
    redis_url: str,
    redis_prefix: str,
    tiny_artifacts: TinyArtifacts,
    tmp_path: Path,
) -> None:
    """The owner polls the job store: a cancel requested by any worker stops the job. The job runs
    >= 6000/64 * 0.1 = 9.4 s (slowed encoder), so it cannot finish before the cancel is seen."""
    app = create_app(
        make_settings(redis={"url": redis_url, "key_prefix": redis_prefix}),
        components=Components(encoder=SlowEncoder(TEXT_DIM)),
    )
    with TestClient(app) as client:
        _cancel_from_peer(client, redis_url, redis_prefix, tiny_artifacts, tmp_path)


def _cancel_from_peer(
    client: TestClient, redis_url: str, redis_prefix: str, tiny_artifacts: TinyArtifacts, tmp_path: Path
) -> None:
    state = client.app.state.recsvc  # type: ignore[attr-defined]
    before = state.store.index.collections()
    job_id = start(client, catalog_path=big(tiny_artifacts, tmp_path, 6000))

    async def peer_cancel() -> None:  # what another worker's cancel route does for a job it does not run
        peer = aioredis.from_url(redis_url, decode_responses=True)
        try:
            await RedisJobStore(peer, redis_prefix).request_cancel(job_id)
        finally:
            await peer.aclose()

    asyncio.run(peer_cancel())
    job = wait_job(client, job_id, timeout=60)
    assert job["status"] == "cancelled", job
    assert state.store.index.collections() == before
