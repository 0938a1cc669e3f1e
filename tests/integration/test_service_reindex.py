"""The service end to end with real parts: reindex while serving, the one-at-a-time lock,
cache invalidation by alias swap, new items, failed reindexes, restarts, and the
alias-moved message between workers — with a real redis-server and without Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.core.items import item_from_dict, item_text
from service.encoding.fake import FakeEncoder
from service.stores.events import IndexChanged
from tests.api.test_admin import wait_job
from tests.api.test_embed import assert_error
from tests.conftest import TEXT_DIM, TinyArtifacts, admin_headers, make_catalog, write_jsonl

pytestmark = pytest.mark.integration


@pytest.fixture(params=["redis", "in-process"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings overrides: a real Redis (own key prefix per test) or none."""
    if request.param == "in-process":
        return {"redis": {"url": None}}
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    return {"redis": {"url": url, "key_prefix": prefix}}


def reindex(client: TestClient, catalog: Path | None = None, **extra: Any) -> str:
    body: dict[str, Any] | None = {"catalog_path": str(catalog)} if catalog is not None else None
    if extra:
        body = {**(body or {}), **extra}
    resp = client.post("/admin/reindex", json=body, headers=admin_headers())
    assert resp.status_code == 202, resp.text
    job_id: str = resp.json()["job_id"]
    return job_id


def big_catalog(tiny: TinyArtifacts, tmp_path: Path, extra: int) -> Path:
    """The artifact catalog plus ``extra`` new items (encoded by the reindex)."""
    return write_jsonl(tmp_path / "catalog.jsonl", tiny.catalog + make_catalog(extra, seed=5, prefix="N"))


def test_reindex_while_serving(
    make_client: Callable[..., TestClient], backend: dict[str, Any], tiny_artifacts: TinyArtifacts, tmp_path: Path
) -> None:
    client = make_client(**backend)
    state = client.app.state.recsvc  # type: ignore[attr-defined]
    old = state.store.snapshot.collection
    catalog = big_catalog(tiny_artifacts, tmp_path, 1500)

    results: list[int] = []
    during: list[bool] = []
    stop = threading.Event()

    def hammer(i: int) -> None:
        while not stop.is_set():
            history = [f"P{(i * 3 + j) % 48:04d}" for j in range(3)]
            resp = client.post("/recommend", json={"history": history, "k": 5, "filters": {"price_max": 50}})
            results.append(resp.status_code)
            during.append(state.reindex.running)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        job_id = reindex(client, catalog)
        job = wait_job(client, job_id, timeout=120)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert job["status"] == "succeeded", job
    assert results and all(code == 200 for code in results), set(results)
    assert any(during), "no request ran while the reindex was running"
    new = job["collection"]
    assert new != old
    assert state.store.index.current_collection() == new
    assert state.store.index.collections() == [old, new]  # the previous one is kept for rollback
    assert state.store.index.count() == 48 + 1500
    assert job["stats"]["encoded"] == 1500 and job["stats"]["reused"] == 48 and job["stats"]["new_items"] == 1500
    assert client.post("/recommend", json={"history": ["N0001"]}).status_code == 200


def test_second_reindex_is_409(
    make_client: Callable[..., TestClient], backend: dict[str, Any], tiny_artifacts: TinyArtifacts, tmp_path: Path
) -> None:
    client = make_client(**backend)
    catalog = big_catalog(tiny_artifacts, tmp_path, 1500)
    first = reindex(client, catalog)
    err = assert_error(client.post("/admin/reindex", headers=admin_headers()), 409, "reindex_in_progress")
    assert err["details"]["job_id"] == first
    assert wait_job(client, first, timeout=120)["status"] == "succeeded"
    # the lock is released: the next one runs (back to the 48 items: past the shrink guard with force)
    assert wait_job(client, reindex(client, force=True))["status"] == "succeeded"


def test_cache_hit_then_invalidated_by_swap(make_client: Callable[..., TestClient], backend: dict[str, Any]) -> None:
    client = make_client(**backend)
    req = {"history": ["P0003", "P0007"], "k": 6}
    first = client.post("/recommend", json=req).json()
    second = client.post("/recommend", json=req).json()
    assert (first["cached"], second["cached"]) == (False, True)
    assert wait_job(client, reindex(client))["status"] == "succeeded"
    third = client.post("/recommend", json=req).json()
    assert third["cached"] is False and third["index_version"] != first["index_version"]
    # same catalog and models: the same answer from the new collection
    assert [i["item_id"] for i in third["items"]] == [i["item_id"] for i in first["items"]]
    assert client.post("/recommend", json=req).json()["cached"] is True


def test_new_item_becomes_recommendable_and_usable(
    make_client: Callable[..., TestClient], backend: dict[str, Any], tiny_artifacts: TinyArtifacts, tmp_path: Path
) -> None:
    client = make_client(**backend)
    new = {
        "item_id": "NEW-1",
        "title": "Limited edition glitter nail kit",
        "categories": ["Nails", "Limited"],
        "price": 9,
    }
    changed = dict(tiny_artifacts.catalog[1], title="Renamed hair product")
    rows = [r for r in tiny_artifacts.catalog if r["item_id"] not in ("P0001", "P0047")] + [changed, new]
    catalog = write_jsonl(tmp_path / "catalog.jsonl", rows)

    assert_error(client.post("/recommend", json={"history": ["NEW-1"]}), 422, "unknown_item")
    job = wait_job(client, reindex(client, catalog))
    assert job["status"] == "succeeded", job
    assert job["stats"] == {**job["stats"], "items": 48, "encoded": 2, "reused": 46, "new_items": 1}

    resp = client.post("/recommend", json={"history": ["NEW-1", "P0002"], "k": 5})
    assert resp.status_code == 200, resp.text
    resp = client.post("/recommend", json={"history": ["P0002"], "filters": {"categories": ["Limited"]}})
    assert [i["item_id"] for i in resp.json()["items"]] == ["NEW-1"]
    assert_error(client.post("/recommend", json={"history": ["P0047"]}), 422, "unknown_item")  # removed
    # the changed item was re-encoded with the live encoder
    state = client.app.state.recsvc  # type: ignore[attr-defined]
    snap = state.store.snapshot
    row = snap.row_of["P0001"]
    expected = FakeEncoder(dim=TEXT_DIM).encode([item_text(item_from_dict(changed))])[0]
    np.testing.assert_allclose(snap.text_vectors[row], expected, atol=1e-5)
    hits = state.store.index.search("text", expected, 1)
    assert hits[0].item_id == "P0001" and hits[0].payload["title"] == "Renamed hair product"


@pytest.mark.parametrize(
    "content",
    [
        '{"item_id": "a", "title": "ok"}\n{"item_id": "b", "title": "ok", "price": "cheap"}\n',
        '{"item_id": "a", "title": "ok"}\n{not json\n',
        '{"item_id": "a", "title": "ok"}\n{"item_id": "a", "title": "again"}\n',
        "",
    ],
)
def test_failed_reindex_keeps_serving(
    make_client: Callable[..., TestClient], backend: dict[str, Any], tmp_path: Path, content: str
) -> None:
    """A malformed catalog is refused before the 202 (422 naming the file and line); nothing changes."""
    client = make_client(**backend)
    state = client.app.state.recsvc  # type: ignore[attr-defined]
    before = state.store.index.current_collection()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    resp = client.post("/admin/reindex", json={"catalog_path": "bad.jsonl"}, headers=admin_headers())
    err = assert_error(resp, 422, "invalid_catalog")
    assert err["message"].startswith("bad.jsonl") and str(tmp_path) not in err["message"]
    if content:
        assert "bad.jsonl:2:" in err["message"]  # names the line
    assert state.store.index.current_collection() == before
    assert state.store.index.collections() == [before]
    resp = client.post("/recommend", json={"history": ["P0001"]})
    assert resp.status_code == 200 and resp.json()["index_version"] == before
    # the lock was released
    assert wait_job(client, reindex(client))["status"] == "succeeded"


def test_missing_catalog_is_422(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    client = make_client()
    resp = client.post("/admin/reindex", json={"catalog_path": "nope.jsonl"}, headers=admin_headers())
    assert "not found" in assert_error(resp, 422, "invalid_catalog_path")["message"]


def test_restart_adopts_the_served_collection(
    make_client: Callable[..., TestClient], tiny_artifacts: TinyArtifacts, tmp_path: Path
) -> None:
    """A restarted service serves what the last reindex built (new items included), without a rebuild."""
    client = make_client()
    assert client.app.state.recsvc.store.snapshot.collection == "items_v1"  # type: ignore[attr-defined]
    catalog = write_jsonl(tmp_path / "c.jsonl", [*tiny_artifacts.catalog, {"item_id": "NEW-9", "title": "New thing"}])
    assert wait_job(client, reindex(client, catalog))["status"] == "succeeded"
    client.__exit__(None, None, None)

    again = make_client()
    state = again.app.state.recsvc  # type: ignore[attr-defined]
    assert state.store.snapshot.collection == "items_v2"
    assert state.store.index.collections() == ["items_v1", "items_v2"]  # v1 kept for rollback
    assert again.post("/recommend", json={"history": ["NEW-9"]}).status_code == 200


def test_collection_from_another_artifact_set_is_rebuilt(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    state = client.app.state.recsvc  # type: ignore[attr-defined]
    index = state.store.index
    snap = state.store.snapshot
    # a collection built with other models (shifted vectors) and no metadata, behind the alias
    rng = np.random.default_rng(0)
    other = snap.text_vectors + rng.normal(scale=0.5, size=snap.text_vectors.shape).astype(np.float32)
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    name = index.build(snap.items, other, snap.seqrec_vectors)
    index.swap_alias(name)
    index.drop(snap.collection)
    client.__exit__(None, None, None)

    again = make_client()
    state = again.app.state.recsvc  # type: ignore[attr-defined]
    served = state.store.snapshot
    assert served.collection != name  # rebuilt from the artifact set
    np.testing.assert_allclose(served.text_vectors, snap.text_vectors, atol=1e-6)
    assert state.store.index.collections() == [name, served.collection]  # the other set's one is kept


def test_offline_built_collection_is_adopted(make_client: Callable[..., TestClient]) -> None:
    """A collection pushed by `recsvc-train build` (no service metadata) with the set's vectors is served as is."""
    client = make_client()
    state = client.app.state.recsvc  # type: ignore[attr-defined]
    index, snap = state.store.index, state.store.snapshot
    name = index.build(snap.items, snap.text_vectors, snap.seqrec_vectors)  # like training/jobs/build.py push()
    index.swap_alias(name)
    index.drop(snap.collection)
    client.__exit__(None, None, None)
    again = make_client()
    assert again.app.state.recsvc.store.snapshot.collection == name  # type: ignore[attr-defined]


def test_other_worker_swap_reaches_this_worker(
    make_client: Callable[..., TestClient], redis_url: str, redis_prefix: str
) -> None:
    """Another worker (sharing Qdrant and Redis) swaps the alias and publishes; this one reloads."""
    client = make_client(redis={"url": redis_url, "key_prefix": redis_prefix})
    state = client.app.state.recsvc  # type: ignore[attr-defined]
    index, snap = state.store.index, state.store.snapshot
    keep = snap.items[:40]
    rows = [snap.row_of[it.item_id] for it in keep]
    assert snap.seqrec_vectors is not None
    # what the peer worker does: build, swap, publish
    new = index.build(
        keep, snap.text_vectors[rows], snap.seqrec_vectors[rows], metadata={"artifact_version": state.model_version}
    )
    old = index.swap_alias(new)
    import redis

    peer = redis.Redis.from_url(redis_url)
    peer.publish(f"{redis_prefix}:index", IndexChanged(new, old, state.model_version, origin="peer").to_json())
    peer.close()
    deadline = time.monotonic() + 10
    while state.store.snapshot.collection != new:
        assert time.monotonic() < deadline, "worker did not reload after the message"
        time.sleep(0.05)
    resp = client.post("/recommend", json={"history": [keep[0].item_id], "k": 100})
    assert resp.json()["index_version"] == new and len(resp.json()["items"]) == 39
    assert_error(client.post("/recommend", json={"history": [snap.items[45].item_id]}), 422, "unknown_item")
