"""The /recommend response cache never serves an answer computed before an items change: the key
carries the snapshot version (collection + content digest), on the in-process cache and on a real
shared Redis, on the worker that made the change and on the one that applied its message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_items import NEW, delete, put
from tests.integration.test_items_workers import _eventually

pytestmark = pytest.mark.integration

REQ = {"history": ["P0001", "P0005"], "k": 10}


def rec(client: TestClient, **extra: Any) -> dict[str, Any]:
    resp = client.post("/recommend", json={**REQ, **extra})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [it["item_id"] for it in body["items"]]


@pytest.fixture(params=["memory", "redis"])
def cache_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "memory":
        return {"redis": {"url": None, "cache_ttl_s": 300}}
    url = request.getfixturevalue("redis_url")
    return {"redis": {"url": url, "key_prefix": request.getfixturevalue("redis_prefix"), "cache_ttl_s": 300}}


def test_upsert_update_and_delete_are_never_answered_from_the_cache(
    make_client: Callable[..., TestClient], cache_settings: dict[str, Any]
) -> None:
    client = make_client(**cache_settings)
    first = rec(client)
    assert rec(client)["cached"] and ids(rec(client)) == ids(first)  # the cache is on
    beard = {"filters": {"categories": ["Beard"]}}
    assert ids(rec(client, **beard)) == [] and rec(client, **beard)["cached"]

    # upsert: the cached empty answer of the filter must not survive
    assert put(client, [NEW]).status_code == 200
    after = rec(client, **beard)
    assert ids(after) == ["NEW-1"] and not after["cached"]
    assert rec(client, **beard)["cached"]  # and the new answer is cached in turn

    # update: a price filter now excludes it
    cheap = {"filters": {"categories": ["Beard"], "price_max": 5}}
    assert ids(rec(client, **cheap)) == []
    assert put(client, [{**NEW, "price": 3.0}]).status_code == 200
    assert ids(rec(client, **cheap)) == ["NEW-1"]

    # delete: an item of the cached answer is never returned again
    gone = ids(first)[0]
    assert delete(client, [gone]).status_code == 200
    for _ in range(2):  # computed, then from the cache
        assert gone not in ids(rec(client))
    assert ids(rec(client, **beard)) == ["NEW-1"]
    assert delete(client, ["NEW-1"]).status_code == 200
    assert ids(rec(client, **beard)) == []


def test_a_shared_redis_cache_is_never_stale_on_either_worker(
    make_client: Callable[..., TestClient], redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    redis = {"url": redis_url, "key_prefix": redis_prefix, "cache_ttl_s": 300}
    a = make_client(redis=redis)
    b = make_client(redis=redis, data_dir=tmp_path / "b", qdrant={"path": str(tmp_path / "b" / "qdrant")})
    before = rec(b)  # cached in the shared Redis by b
    assert rec(a)["cached"] and ids(rec(a)) == ids(before)  # a is served b's entry: one shared cache
    gone = ids(before)[0]
    assert delete(a, [gone]).status_code == 200
    assert gone not in ids(rec(a))  # a: never b's entry of the old items
    assert _eventually(lambda: gone not in ids(rec(b)))  # b: once it applied a's message
    # both serve the same items again: they share entries again
    assert rec(b)["cached"] and ids(rec(b)) == ids(rec(a))
