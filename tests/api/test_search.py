"""POST /search: text or item id -> top-k by text similarity over the live collection, with the
filters of /recommend; items a reindex adds are found."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.core.items import item_from_dict, item_text
from service.encoding.fake import FakeEncoder
from tests.api.test_admin import wait_job
from tests.api.test_embed import assert_error
from tests.conftest import TEXT_DIM, TinyArtifacts, admin_headers, make_catalog, write_jsonl


def _catalog_vectors(catalog: list[dict[str, Any]]) -> np.ndarray:
    return FakeEncoder(dim=TEXT_DIM).encode([item_text(item_from_dict(r)) for r in catalog])  # [N, T]


def _expected(
    catalog: list[dict[str, Any]], query: np.ndarray, k: int, keep: Callable[[dict[str, Any]], bool]
) -> list[str]:
    scores = _catalog_vectors(catalog) @ (query / np.linalg.norm(query))  # [N]
    order = [i for i in np.argsort(-scores, kind="stable") if keep(catalog[i])]
    return [catalog[i]["item_id"] for i in order[:k]]


def test_search_by_text_ranks_by_cosine(make_client: Callable[..., TestClient], tiny_artifacts: TinyArtifacts) -> None:
    client = make_client()
    catalog = tiny_artifacts.catalog
    resp = client.post("/search", json={"query": "Nails product bold", "k": 6})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["index_version"] and body["model_version"] == tiny_artifacts.version
    ids = [it["item_id"] for it in body["items"]]
    query = FakeEncoder(dim=TEXT_DIM).encode(["Nails product bold"])[0]
    assert ids == _expected(catalog, query, 6, lambda r: True)
    assert [it["rank"] for it in body["items"]] == [1, 2, 3, 4, 5, 6]
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 + 1e-6 for s in scores)
    first = body["items"][0]["payload"]
    assert "Nails" in first["categories"] and first["title"] and "_row" not in first


def test_an_items_own_text_finds_it_first(
    make_client: Callable[..., TestClient], tiny_artifacts: TinyArtifacts
) -> None:
    row = tiny_artifacts.catalog[7]
    text = item_text(item_from_dict(row))
    body = make_client().post("/search", json={"query": text, "k": 3}).json()
    assert body["items"][0]["item_id"] == row["item_id"]
    assert body["items"][0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_search_by_item_excludes_it_and_applies_filters(
    make_client: Callable[..., TestClient], tiny_artifacts: TinyArtifacts
) -> None:
    client = make_client()
    catalog = tiny_artifacts.catalog
    seed = catalog[5]
    vec = _catalog_vectors([seed])[0]
    resp = client.post("/search", json={"item_id": seed["item_id"], "k": 5})
    assert resp.status_code == 200, resp.text
    ids = [it["item_id"] for it in resp.json()["items"]]
    assert seed["item_id"] not in ids and len(ids) == 5
    assert ids == _expected(catalog, vec, 5, lambda r: r["item_id"] != seed["item_id"])

    flt = {"categories": ["Hair", "Nails"], "price_min": 10, "price_max": 40}
    resp = client.post("/search", json={"item_id": seed["item_id"], "k": 50, "filters": flt})
    items = resp.json()["items"]

    def keep(r: dict[str, Any]) -> bool:
        return (
            r["item_id"] != seed["item_id"]
            and bool({"Hair", "Nails"} & set(r["categories"]))
            and r.get("price") is not None
            and 10 <= r["price"] <= 40
        )

    assert [it["item_id"] for it in items] == _expected(catalog, vec, 50, keep)
    assert 0 < len(items) < 48
    # the same filter through /recommend keeps the same set of items
    rec = client.post("/recommend", json={"history": [seed["item_id"]], "k": 50, "filters": flt}).json()
    assert {it["item_id"] for it in rec["items"]} == {it["item_id"] for it in items}


def test_search_errors(make_client: Callable[..., TestClient]) -> None:
    client = make_client(limits={"max_k": 20, "max_text_chars": 50})
    assert_error(client.post("/search", json={}), 422, "invalid_request")
    assert_error(client.post("/search", json={"query": "a", "item_id": "P0001"}), 422, "invalid_request")
    assert_error(client.post("/search", json={"query": "   "}), 422, "invalid_request")
    err = assert_error(client.post("/search", json={"item_id": "nope"}), 422, "unknown_item")
    assert err["details"] == {"unknown_ids": ["nope"]}
    assert_error(client.post("/search", json={"query": "a", "k": 21}), 413, "limit_exceeded")
    assert_error(client.post("/search", json={"query": "a" * 51}), 413, "limit_exceeded")
    assert_error(
        client.post("/search", json={"query": "a", "filters": {"price_min": 5, "price_max": 1}}), 422, "invalid_request"
    )


@pytest.mark.integration
def test_items_added_by_a_reindex_are_found(
    make_client: Callable[..., TestClient], tiny_artifacts: TinyArtifacts, tmp_path: Path
) -> None:
    client = make_client()
    new = make_catalog(3, seed=9, prefix="N")
    new[1]["title"] = "Sandalwood beard balm with argan oil"
    query = {"query": "sandalwood beard balm argan", "k": 3}
    before = client.post("/search", json=query).json()
    assert all(not it["item_id"].startswith("N") for it in before["items"])

    catalog = write_jsonl(tmp_path / "catalog.jsonl", tiny_artifacts.catalog + new)
    resp = client.post("/admin/reindex", json={"catalog_path": str(catalog)}, headers=admin_headers())
    assert resp.status_code == 202, resp.text
    assert wait_job(client, resp.json()["job_id"])["status"] == "succeeded"

    after = client.post("/search", json=query).json()
    assert after["index_version"] != before["index_version"]
    assert after["items"][0]["item_id"] == new[1]["item_id"]
    assert after["items"][0]["payload"]["title"] == "Sandalwood beard balm with argan oil"
    by_id = client.post("/search", json={"item_id": new[1]["item_id"], "k": 2}).json()
    assert by_id["items"] and new[1]["item_id"] not in [it["item_id"] for it in by_id["items"]]
