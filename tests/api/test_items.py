"""PUT/DELETE /admin/items: validated batches, live in the served snapshot and the collection,
durable in the item log across restarts, torn writes and reindexes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_admin import wait_job
from tests.api.test_embed import assert_error
from tests.conftest import TinyArtifacts, admin_headers, write_jsonl

NEW = {
    "item_id": "NEW-1",
    "title": "Sandalwood beard balm with argan oil",
    "brand": "Woodsman",
    "categories": ["Beard"],
    "price": 7.5,
    "attributes": {"scent": "sandalwood"},
}
QUERY = {"query": "Sandalwood beard balm with argan oil", "k": 3}


def put(client: TestClient, items: list[dict[str, Any]]) -> Any:
    return client.put("/admin/items", json={"items": items}, headers=admin_headers())


def delete(client: TestClient, ids: list[str]) -> Any:
    return client.request("DELETE", "/admin/items", json={"ids": ids}, headers=admin_headers())


def found(client: TestClient, item_id: str, **filters: Any) -> bool:
    body = {**QUERY, **({"filters": filters} if filters else {})}
    resp = client.post("/search", json=body)
    assert resp.status_code == 200, resp.text
    return any(it["item_id"] == item_id for it in resp.json()["items"])


def recommendable(client: TestClient, item_id: str) -> bool:
    resp = client.post("/recommend", json={"history": [item_id], "k": 5})
    return resp.status_code == 200


def test_upsert_is_live_for_search_history_candidates_and_filters(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert not found(client, "NEW-1")
    assert not recommendable(client, "NEW-1")  # unknown id in a history: 422
    resp = put(client, [NEW])
    assert resp.status_code == 200, resp.text
    assert resp.json()["created"] == 1 and resp.json()["updated"] == 0
    hit = client.post("/search", json=QUERY).json()["items"][0]
    assert hit["item_id"] == "NEW-1" and hit["payload"]["brand"] == "Woodsman"
    assert hit["payload"]["attributes"] == {"scent": "sandalwood"}
    assert found(client, "NEW-1", categories=["Beard"])
    assert not found(client, "NEW-1", price_max=5)  # filters see its price
    assert recommendable(client, "NEW-1")  # in a history by id
    # a candidate of the dense ranking: the only item of its category
    resp = client.post("/recommend", json={"history": ["P0001"], "k": 5, "filters": {"categories": ["Beard"]}})
    assert resp.status_code == 200, resp.text
    assert [it["item_id"] for it in resp.json()["items"]] == ["NEW-1"]


def test_update_and_delete(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert put(client, [NEW]).status_code == 200
    resp = put(client, [{**NEW, "price": 3.0}])
    assert resp.json()["updated"] == 1
    assert found(client, "NEW-1", price_max=5)
    resp = delete(client, ["NEW-1", "P0002"])
    assert resp.status_code == 200, resp.text
    assert resp.json()["deleted"] == 2
    assert not found(client, "NEW-1")
    assert not recommendable(client, "NEW-1") and not recommendable(client, "P0002")
    assert recommendable(client, "P0001")
    assert delete(client, ["NEW-1"]).json() == {**delete(client, ["NEW-1"]).json(), "deleted": 0, "unchanged": 1}


def test_same_body_twice_changes_nothing(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    first = put(client, [NEW, {**NEW, "item_id": "NEW-2"}]).json()
    second = put(client, [NEW, {**NEW, "item_id": "NEW-2"}]).json()
    assert (first["created"], first["unchanged"]) == (2, 0)
    assert (second["created"], second["updated"], second["unchanged"]) == (0, 0, 2)


def test_bad_batch_is_rejected_whole_with_per_item_errors(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    bad = [NEW, {"item_id": "NEW-2", "title": "ok", "price": "cheap"}, {"title": "no id"}, {**NEW}]
    err = assert_error(put(client, bad), 422, "invalid_request")
    by_index = {d["index"]: d for d in err["details"]}
    assert set(by_index) == {1, 2, 3}
    assert by_index[1]["item_id"] == "NEW-2" and by_index[1]["field"] == "price"
    assert by_index[2]["field"] == "item_id"
    assert "duplicate" in by_index[3]["message"]
    assert not found(client, "NEW-1")  # nothing applied


def test_batch_over_the_limit_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(items={"max_batch": 2})
    items = [{**NEW, "item_id": f"NEW-{i}"} for i in range(3)]
    err = assert_error(put(client, items), 413, "limit_exceeded")
    assert "2" in err["message"]


def test_durable_across_restart_and_torn_last_line(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    client = make_client()
    assert put(client, [NEW]).status_code == 200
    assert delete(client, ["P0003"]).status_code == 200
    client.__exit__(None, None, None)
    log = tmp_path / "var" / "items" / "log.jsonl"
    assert len(log.read_text().splitlines()) == 2
    with open(log, "a") as f:  # kill -9 in the middle of an unacknowledged write
        f.write('{"op":"upsert","item":{"item_id":"TORN"')
    again = make_client()
    assert found(again, "NEW-1") and recommendable(again, "NEW-1")
    assert not recommendable(again, "P0003")
    assert log.read_text().endswith("\n")  # the torn tail was cut off
    assert put(again, [{**NEW, "item_id": "NEW-3"}]).status_code == 200
    assert [json.loads(x)["op"] for x in log.read_text().splitlines()] == ["upsert", "delete", "upsert"]


@pytest.mark.integration
def test_api_items_survive_a_later_reindex(
    make_client: Callable[..., TestClient], tiny_artifacts: TinyArtifacts, tmp_path: Path
) -> None:
    client = make_client()
    assert put(client, [NEW]).status_code == 200
    assert delete(client, ["P0004"]).status_code == 200
    # the catalog file still holds P0004 and an older NEW-1: the log wins
    catalog = write_jsonl(tmp_path / "catalog.jsonl", [*tiny_artifacts.catalog, {**NEW, "title": "Old title"}])
    resp = client.post("/admin/reindex", json={"catalog_path": str(catalog)}, headers=admin_headers())
    assert resp.status_code == 202, resp.text
    job = wait_job(client, resp.json()["job_id"])
    assert job["status"] == "succeeded", job
    hit = client.post("/search", json=QUERY).json()
    assert hit["index_version"] == job["collection"]
    assert hit["items"][0]["item_id"] == "NEW-1" and hit["items"][0]["payload"]["title"] == NEW["title"]
    assert not recommendable(client, "P0004")
    # and the new collection itself holds it (a restart loads it from Qdrant)
    client.__exit__(None, None, None)
    again = make_client()
    assert found(again, "NEW-1") and not recommendable(again, "P0004")


@pytest.mark.integration
def test_upsert_while_a_reindex_runs_survives_it(
    make_client: Callable[..., TestClient], tiny_artifacts: TinyArtifacts, tmp_path: Path
) -> None:
    client = make_client()
    catalog = write_jsonl(tmp_path / "catalog.jsonl", tiny_artifacts.catalog)
    resp = client.post("/admin/reindex", json={"catalog_path": str(catalog)}, headers=admin_headers())
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    assert put(client, [NEW]).status_code == 200  # acknowledged while the job is queued or running
    job = wait_job(client, job_id)
    assert job["status"] == "succeeded", job
    hit = client.post("/search", json=QUERY).json()
    assert hit["index_version"] == job["collection"] and hit["items"][0]["item_id"] == "NEW-1"


def test_the_log_alone_restores_api_items(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    """The store is lost (its folder removed): the bootstrap rebuilds from the artifact catalog and
    the item log brings every acknowledged change back."""
    import shutil

    client = make_client()
    assert put(client, [NEW]).status_code == 200
    assert delete(client, ["P0003"]).status_code == 200
    client.__exit__(None, None, None)
    shutil.rmtree(tmp_path / "var" / "qdrant")
    again = make_client()
    assert found(again, "NEW-1") and recommendable(again, "NEW-1")
    assert not recommendable(again, "P0003")


def test_a_price_that_is_not_a_finite_number_is_rejected(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    body = '{"items": [{"item_id": "NEW-NAN", "title": "Nan price", "price": NaN}]}'
    resp = client.put("/admin/items", content=body, headers={**admin_headers(), "Content-Type": "application/json"})
    err = assert_error(resp, 422, "invalid_request")
    assert err["details"][0]["field"] == "price" and "finite" in err["details"][0]["message"]
    assert not recommendable(client, "NEW-NAN")
