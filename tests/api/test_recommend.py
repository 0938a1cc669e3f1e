"""POST /recommend (dense): results match the seqrec model computed by hand, filters,
errors, limits and the cache flag."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.core.items import Item, item_text
from service.core.manifest import Manifest
from service.encoding.fake import FakeEncoder
from service.recommender.dense import SeqRecRuntime
from tests.api.test_embed import assert_error
from tests.conftest import TEXT_DIM, TinyArtifacts


class Reference:
    """The dense recommender computed directly from the artifact files."""

    def __init__(self, tiny: TinyArtifacts) -> None:
        manifest = Manifest.read(tiny.root)
        assert manifest.seqrec is not None
        self.runtime = SeqRecRuntime.from_manifest(tiny.root, manifest.seqrec, device="cpu")
        self.ids = [r["item_id"] for r in tiny.catalog]
        self.row = {iid: i for i, iid in enumerate(self.ids)}
        text = np.load(tiny.root / manifest.items.text_vectors)
        self.items = self.runtime.item_vectors(text)  # [N, D]

    def top(self, history: Sequence[np.ndarray | str], k: int, exclude: set[str]) -> list[str]:
        reps = np.stack([self.items[self.row[h]] if isinstance(h, str) else h for h in history])  # [L, D]
        user = self.runtime.user_vectors([reps])[0]  # [D]
        scores = self.items @ user  # [N]
        order = [self.ids[i] for i in np.argsort(-scores, kind="stable") if self.ids[i] not in exclude]
        return order[:k]


@pytest.fixture(scope="module")
def ref(tiny_artifacts: TinyArtifacts) -> Reference:
    return Reference(tiny_artifacts)


def ids_of(resp: Any) -> list[str]:
    return [it["item_id"] for it in resp.json()["items"]]


def test_dense_matches_the_model(make_client: Callable[..., TestClient], ref: Reference) -> None:
    client = make_client()
    history = ["P0001", {"item_id": "P0005"}, "P0009"]
    resp = client.post("/recommend", json={"history": history, "k": 7})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["mode"] == "dense" and body["cached"] is False
    assert body["index_version"].startswith("items_v") and body["model_version"] == "20260101-000000-tiny"
    assert [it["rank"] for it in body["items"]] == list(range(1, 8))
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert ids_of(resp) == ref.top(["P0001", "P0005", "P0009"], 7, {"P0001", "P0005", "P0009"})
    first = body["items"][0]
    assert first["payload"]["item_id"] == first["item_id"] and "row" not in first["payload"]
    assert "title" in first["payload"] and "categories" in first["payload"]


def test_repeat_is_served_from_cache(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    req = {"history": ["P0002", "P0003"], "k": 5}
    a = client.post("/recommend", json=req).json()
    b = client.post("/recommend", json=req).json()
    assert a["cached"] is False and b["cached"] is True
    assert a["items"] == b["items"]
    c = client.post("/recommend", json={**req, "k": 4}).json()  # another request: another key
    assert c["cached"] is False


def test_unseen_item_given_by_text(make_client: Callable[..., TestClient], ref: Reference) -> None:
    client = make_client()
    new: dict[str, Any] = {"title": "Lavender night cream", "brand": "Calm", "categories": ["Skin"]}
    resp = client.post("/recommend", json={"history": ["P0004", {"item": new}], "k": 5})
    assert resp.status_code == 200, resp.text
    text = item_text(Item(item_id="", title=new["title"], brand="Calm", categories=("Skin",)))
    vec = FakeEncoder(dim=TEXT_DIM).encode([text])
    cold = ref.runtime.item_vectors(vec, np.zeros(1, dtype=bool))[0]  # text-only path
    assert ids_of(resp) == ref.top(["P0004", cold], 5, {"P0004"})
    # a history made only of unseen items works too
    resp = client.post("/recommend", json={"history": [{"item": {"text": "rose perfume"}}], "k": 3})
    assert resp.status_code == 200 and len(resp.json()["items"]) == 3


def test_unknown_ids_are_all_listed(make_client: Callable[..., TestClient]) -> None:
    resp = make_client().post("/recommend", json={"history": ["P0001", "NOPE1", {"item_id": "NOPE2"}, "NOPE1"]})
    err = assert_error(resp, 422, "unknown_item")
    assert err["details"]["unknown_ids"] == ["NOPE1", "NOPE2"]
    assert "NOPE1" in err["message"] and "NOPE2" in err["message"]


def test_empty_history(make_client: Callable[..., TestClient]) -> None:
    assert_error(make_client().post("/recommend", json={"history": []}), 422, "empty_history")


def test_exclude_history(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    history = ["P0001", "P0002", "P0003"]
    all_items = ids_of(client.post("/recommend", json={"history": history, "k": 100, "exclude_history": False}))
    assert len(all_items) == 48 and set(history) <= set(all_items)
    excluded = ids_of(client.post("/recommend", json={"history": history, "k": 100}))
    assert len(excluded) == 45 and not set(history) & set(excluded)
    assert [i for i in all_items if i not in history] == excluded  # same ranking, minus the history


def test_category_and_price_filters(make_client: Callable[..., TestClient], tiny_artifacts: TinyArtifacts) -> None:
    client = make_client()
    catalog = {r["item_id"]: r for r in tiny_artifacts.catalog}
    resp = client.post("/recommend", json={"history": ["P0001"], "k": 100, "filters": {"categories": ["Nails"]}})
    got = ids_of(resp)
    assert got and all("Nails" in catalog[i]["categories"] for i in got)
    assert set(got) == {i for i, r in catalog.items() if "Nails" in r["categories"]} - {"P0001"}

    flt = {"categories": ["Hair", "Skin"], "price_min": 10, "price_max": 30}
    got = ids_of(client.post("/recommend", json={"history": ["P0001"], "k": 100, "filters": flt}))
    expected = {
        i
        for i, r in catalog.items()
        if {"Hair", "Skin"} & set(r["categories"]) and r.get("price") is not None and 10 <= r["price"] <= 30
    } - {"P0001"}
    assert set(got) == expected and expected
    # items without a price never pass a price filter
    assert all("price" in catalog[i] for i in got)
    # k smaller than the matches: still k results, all matching (filtered inside the search)
    got = ids_of(client.post("/recommend", json={"history": ["P0001"], "k": 3, "filters": flt}))
    assert len(got) == 3 and set(got) <= expected
    resp = client.post("/recommend", json={"history": ["P0001"], "filters": {"categories": ["Nothing"]}})
    assert resp.status_code == 200 and resp.json()["items"] == []


def test_bad_filters(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for flt in ({"price_min": 30, "price_max": 10}, {"price_min": -1}, {"colour": "red"}):
        assert_error(client.post("/recommend", json={"history": ["P0001"], "filters": flt}), 422, "invalid_request")


def test_k_bounds(make_client: Callable[..., TestClient]) -> None:
    client = make_client(limits={"max_k": 20})
    assert len(ids_of(client.post("/recommend", json={"history": ["P0001"], "k": 1}))) == 1
    assert len(ids_of(client.post("/recommend", json={"history": ["P0001"], "k": 20}))) == 20
    assert_error(client.post("/recommend", json={"history": ["P0001"], "k": 0}), 422, "invalid_request")
    err = assert_error(client.post("/recommend", json={"history": ["P0001"], "k": 21}), 413, "limit_exceeded")
    assert err["details"] == {"field": "k", "limit": 20, "actual": 21}
    assert_error(client.post("/recommend", json={"history": ["P0001"], "k": "ten"}), 422, "invalid_request")


def test_history_limit_and_long_history(make_client: Callable[..., TestClient], ref: Reference) -> None:
    client = make_client(limits={"max_history": 12})
    assert_error(client.post("/recommend", json={"history": ["P0001"] * 13}), 413, "limit_exceeded")
    # longer than the model's max_len (8): the last 8 shape the user, all 12 are excluded
    history = [f"P{i:04d}" for i in range(12)]
    resp = client.post("/recommend", json={"history": history, "k": 5})
    assert ids_of(resp) == ref.top(history[-8:], 5, set(history))


def test_modes(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for mode in ("generative", "hybrid"):
        err = assert_error(
            client.post("/recommend", json={"history": ["P0001"], "mode": mode}), 422, "mode_unavailable"
        )
        assert err["details"]["available"] == ["dense"]
    assert_error(client.post("/recommend", json={"history": ["P0001"], "mode": "magic"}), 422, "invalid_request")


def test_malformed_history_entries(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    bad: Any
    for bad in ([""], [{"item_id": ""}], [{"item": {}}], [{"foo": "bar"}], [3], "P0001"):
        assert_error(client.post("/recommend", json={"history": bad}), 422, "invalid_request")
