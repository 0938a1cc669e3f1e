"""Catalog safety: catalogs only from the catalog directory, validated before the 202, the shrink
guard, dry runs, kept collections and rollback (embedded Qdrant; in-process and real Redis)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.api.test_admin import wait_job
from tests.api.test_embed import assert_error
from tests.conftest import TinyArtifacts, admin_headers, write_jsonl

pytestmark = pytest.mark.integration


@pytest.fixture(params=["redis", "in-process"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "in-process":
        return {"redis": {"url": None}}
    return {
        "redis": {"url": request.getfixturevalue("redis_url"), "key_prefix": request.getfixturevalue("redis_prefix")}
    }


def post_reindex(client: TestClient, **body: Any) -> Any:
    return client.post("/admin/reindex", json=body, headers=admin_headers())


def run_reindex(client: TestClient, **body: Any) -> dict[str, Any]:
    resp = post_reindex(client, **body)
    assert resp.status_code == 202, resp.text
    return wait_job(client, resp.json()["job_id"])


@pytest.fixture
def catalog_dir(tmp_path: Path, tiny_artifacts: TinyArtifacts) -> Path:
    d = tmp_path / "catalogs"
    write_jsonl(d / "items.jsonl", tiny_artifacts.catalog)
    write_jsonl(d / "2026" / "items.jsonl", [*tiny_artifacts.catalog, {"item_id": "NEW-1", "title": "New one"}])
    return d


def test_paths_outside_the_catalog_dir_are_refused_before_any_job(
    make_client: Callable[..., TestClient], catalog_dir: Path, tmp_path: Path, tiny_artifacts: TinyArtifacts
) -> None:
    outside = write_jsonl(tmp_path / "outside.jsonl", tiny_artifacts.catalog)  # a valid catalog, wrong place
    (catalog_dir / "link-out.jsonl").symlink_to(outside)
    (catalog_dir / "dir-out").symlink_to(tmp_path, target_is_directory=True)
    (catalog_dir / "link-in.jsonl").symlink_to(catalog_dir / "items.jsonl")  # inside: fine
    client = make_client(catalog_dir=catalog_dir)
    state = client.app.state.recsvc  # type: ignore[attr-defined]
    before = state.store.index.collections()
    for name in (
        "/etc/passwd",
        "/proc/self/environ",
        str(outside),
        "../outside.jsonl",
        "2026/../../outside.jsonl",
        "link-out.jsonl",
        "dir-out/outside.jsonl",
        "2026",  # a directory
        "missing.jsonl",
        "",
    ):
        resp = post_reindex(client, catalog_path=name)
        err = assert_error(resp, 422, "invalid_request" if name == "" else "invalid_catalog_path")
        assert "root:" not in resp.text and "PATH=" not in resp.text, name  # nothing of the file leaks
        if name:
            assert err["details"]["catalog_path"] == name
    assert state.store.index.collections() == before
    # names inside the directory (also through a symlink that stays inside, or absolute inside) work
    assert run_reindex(client, catalog_path="link-in.jsonl")["status"] == "succeeded"
    job = run_reindex(client, catalog_path="2026/items.jsonl")
    assert job["status"] == "succeeded" and job["stats"]["catalog"] == "2026/items.jsonl"
    assert run_reindex(client, catalog_path=str(catalog_dir / "items.jsonl"))["status"] == "succeeded"


def test_no_path_reindexes_the_default_catalog(make_client: Callable[..., TestClient], catalog_dir: Path) -> None:
    client = make_client(catalog_dir=catalog_dir)
    job = run_reindex(client)
    assert job["status"] == "succeeded" and job["stats"]["items"] == 48


def test_shrink_guard_refuses_then_force(
    make_client: Callable[..., TestClient], backend: dict[str, Any], catalog_dir: Path, tiny_artifacts: TinyArtifacts
) -> None:
    write_jsonl(catalog_dir / "one.jsonl", tiny_artifacts.catalog[:1])
    write_jsonl(catalog_dir / "most.jsonl", tiny_artifacts.catalog[:44])  # 44/48 = 0.917 >= 0.9
    client = make_client(catalog_dir=catalog_dir, **backend)
    state = client.app.state.recsvc  # type: ignore[attr-defined]
    served = state.store.snapshot.collection
    err = assert_error(post_reindex(client, catalog_path="one.jsonl"), 422, "catalog_shrink")
    assert err["details"]["items"] == 1 and err["details"]["current_items"] == 48 and err["details"]["removed"] == 47
    assert "force" in err["message"]
    assert state.store.index.collections() == [served]
    assert client.post("/recommend", json={"history": ["P0040"]}).status_code == 200  # nothing changed
    # above the share: runs without force
    assert run_reindex(client, catalog_path="most.jsonl")["status"] == "succeeded"
    # forced: the operator meant it
    job = run_reindex(client, catalog_path="one.jsonl", force=True)
    assert job["status"] == "succeeded" and job["stats"]["items"] == 1
    # a stricter share from the settings
    client2 = make_client(catalog_dir=catalog_dir, reindex_min_share=0.95, qdrant={"path": str(catalog_dir / "q2")})
    assert_error(post_reindex(client2, catalog_path="most.jsonl"), 422, "catalog_shrink")


def test_dry_run_reports_counts_and_touches_nothing(
    make_client: Callable[..., TestClient], backend: dict[str, Any], catalog_dir: Path, tiny_artifacts: TinyArtifacts
) -> None:
    rows = [r for r in tiny_artifacts.catalog if r["item_id"] not in ("P0000", "P0001")]  # 2 removed
    rows = [dict(r, title="Renamed") if r["item_id"] == "P0002" else r for r in rows]  # 1 changed
    rows += [{"item_id": f"NEW-{i}", "title": f"new {i}"} for i in range(3)]  # 3 added
    write_jsonl(catalog_dir / "next.jsonl", rows)
    write_jsonl(catalog_dir / "tiny.jsonl", tiny_artifacts.catalog[:2])
    client = make_client(catalog_dir=catalog_dir, **backend)
    state = client.app.state.recsvc  # type: ignore[attr-defined]
    before = (state.store.index.collections(), state.store.index.current_collection())
    resp = post_reindex(client, catalog_path="next.jsonl", dry_run=True)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "dry_run": True,
        "catalog": "next.jsonl",
        "items": 49,
        "current_items": 48,
        "added": 3,
        "removed": 2,
        "changed": 1,
        "unchanged": 45,
        "shrink_refused": None,
    }
    small = post_reindex(client, catalog_path="tiny.jsonl", dry_run=True).json()
    assert small["removed"] == 46 and "fewer than 90%" in small["shrink_refused"]
    assert post_reindex(client, catalog_path="tiny.jsonl", dry_run=True, force=True).json()["shrink_refused"] is None
    assert_error(post_reindex(client, catalog_path="../x", dry_run=True), 422, "invalid_catalog_path")
    assert_error(post_reindex(client, catalog_path="next.jsonl", dry_run="yes"), 422, "invalid_request")
    assert (state.store.index.collections(), state.store.index.current_collection()) == before
    assert_error(client.post("/recommend", json={"history": ["NEW-1"]}), 422, "unknown_item")
    # no lease was taken: the real run starts at once
    assert run_reindex(client, catalog_path="next.jsonl")["status"] == "succeeded"
    assert client.post("/recommend", json={"history": ["NEW-1"]}).status_code == 200


def test_rollback_moves_the_alias_back_and_forth(
    make_client: Callable[..., TestClient], backend: dict[str, Any], catalog_dir: Path
) -> None:
    client = make_client(catalog_dir=catalog_dir, **backend)
    state = client.app.state.recsvc  # type: ignore[attr-defined]
    v1 = state.store.snapshot.collection
    assert_error(client.post("/admin/rollback", headers=admin_headers()), 409, "rollback_unavailable")
    job = run_reindex(client, catalog_path="2026/items.jsonl")
    v2 = job["collection"]
    assert job["stats"]["kept"] == [v1]
    assert client.post("/recommend", json={"history": ["NEW-1"]}).json()["index_version"] == v2
    listed = client.get("/admin/collections", headers=admin_headers()).json()
    assert listed["current"] == v2 and listed["kept"] == [v1]
    assert {c["name"]: c["role"] for c in listed["collections"]} == {v1: "kept", v2: "serving"}

    resp = client.post("/admin/rollback", headers=admin_headers())
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"collection": v1, "previous": v2, "items": 48, "kept": [v2], "stats": {}}
    assert state.store.index.current_collection() == v1
    assert_error(client.post("/recommend", json={"history": ["NEW-1"]}), 422, "unknown_item")
    assert client.post("/recommend", json={"history": ["P0001"]}).json()["index_version"] == v1
    assert client.get("/readyz").json()["index_version"] == v1
    # named target; bad targets are refused
    assert_error(
        client.post("/admin/rollback", json={"collection": v1}, headers=admin_headers()), 409, "rollback_unavailable"
    )
    err = assert_error(
        client.post("/admin/rollback", json={"collection": "items_v99"}, headers=admin_headers()),
        409,
        "rollback_unavailable",
    )
    assert err["details"]["kept"] == [v2]
    assert_error(
        client.post("/admin/rollback", json={"collection": "../x"}, headers=admin_headers()), 422, "invalid_request"
    )
    resp = client.post("/admin/rollback", json={"collection": v2}, headers=admin_headers())
    assert resp.status_code == 200 and resp.json()["collection"] == v2
    assert client.post("/recommend", json={"history": ["NEW-1"]}).json()["index_version"] == v2
    # the next reindex keeps only the newest retired one
    v3 = run_reindex(client, catalog_path="items.jsonl")["collection"]
    assert state.store.index.collections() == [v2, v3]


def test_keep_zero_drops_the_old_collection(make_client: Callable[..., TestClient], catalog_dir: Path) -> None:
    client = make_client(catalog_dir=catalog_dir, reindex_keep_collections=0)
    state = client.app.state.recsvc  # type: ignore[attr-defined]
    new = run_reindex(client)["collection"]
    assert state.store.index.collections() == [new]
    assert_error(client.post("/admin/rollback", headers=admin_headers()), 409, "rollback_unavailable")


def test_rollback_is_served_after_a_restart(make_client: Callable[..., TestClient], catalog_dir: Path) -> None:
    client = make_client(catalog_dir=catalog_dir)
    v1 = client.app.state.recsvc.store.snapshot.collection  # type: ignore[attr-defined]
    v2 = run_reindex(client, catalog_path="2026/items.jsonl")["collection"]
    assert client.post("/admin/rollback", headers=admin_headers()).json()["collection"] == v1
    client.__exit__(None, None, None)
    again = make_client(catalog_dir=catalog_dir)
    state = again.app.state.recsvc  # type: ignore[attr-defined]
    assert state.store.snapshot.collection == v1
    assert again.get("/admin/collections", headers=admin_headers()).json()["kept"] == [v2]


def test_catalog_dir_default_is_under_the_data_dir(make_settings: Callable[..., Any], tmp_path: Path) -> None:
    settings = make_settings(catalog_dir=None, data_dir=tmp_path / "d")
    assert settings.catalog_dir == tmp_path / "d" / "catalogs"
    assert os.fspath(settings.catalog_dir).endswith("catalogs")


@pytest.fixture(scope="module")
def gen_set(tiny_artifacts: TinyArtifacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny set with semantic IDs and a (untrained) generative model."""
    from tests.api.test_recommend_generative import add_generative

    base = tmp_path_factory.mktemp("gen-rollback")
    shutil.copytree(tiny_artifacts.root, base / tiny_artifacts.version)
    add_generative(base / tiny_artifacts.version)
    (base / "LATEST").write_text(tiny_artifacts.version + "\n")
    return base


def test_semantic_ids_follow_a_rollback(
    make_client: Callable[..., TestClient], gen_set: Path, catalog_dir: Path, tiny_artifacts: TinyArtifacts
) -> None:
    write_jsonl(
        catalog_dir / "gen.jsonl", [*tiny_artifacts.catalog, {"item_id": "NEW1", "title": "Hair shampoo fresh"}]
    )
    client = make_client(artifacts_dir=gen_set, catalog_dir=catalog_dir)
    state = client.app.state.recsvc  # type: ignore[attr-defined]
    runtime = state.recommender.generative
    v1 = state.store.snapshot.collection
    sids_v1 = runtime.catalog(v1, state.store.snapshot.item_ids, state.store.snapshot.text_vectors).table.sids.copy()
    job = run_reindex(client, catalog_path="gen.jsonl")
    assert job["status"] == "succeeded" and job["stats"]["sid_new_items"] == 1
    v2 = job["collection"]
    snap2 = state.store.snapshot
    new_sid = runtime.catalog(v2, snap2.item_ids, snap2.text_vectors).table.sids[snap2.row_of["NEW1"]].tolist()

    def generative(history: list[str]) -> dict[str, Any]:
        resp = client.post("/recommend", json={"history": history, "k": 48, "mode": "generative"})
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    assert "NEW1" in {it["item_id"] for it in generative(["P0001"])["items"]}
    resp = client.post("/admin/rollback", headers=admin_headers())
    assert resp.status_code == 200, resp.text
    body = generative(["P0001"])
    assert body["index_version"] == v1 and "NEW1" not in {it["item_id"] for it in body["items"]}
    snap1 = state.store.snapshot
    np.testing.assert_array_equal(runtime.catalog(v1, snap1.item_ids, snap1.text_vectors).table.sids, sids_v1)
    # forward again: the new item decodes with the sid it was given by the reindex
    assert client.post("/admin/rollback", json={"collection": v2}, headers=admin_headers()).status_code == 200
    snap2 = state.store.snapshot
    again = runtime.catalog(v2, snap2.item_ids, snap2.text_vectors).table.sids[snap2.row_of["NEW1"]].tolist()
    assert again == new_sid
    assert "NEW1" in {it["item_id"] for it in generative(["P0001"])["items"]}
