"""Two workers sharing a real redis-server: an items change on one is served by the other within a second."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.test_items import NEW, delete, found, put, recommendable

pytestmark = pytest.mark.integration


def _eventually(check: Callable[[], bool], within_s: float = 1.0) -> bool:
    deadline = time.monotonic() + within_s
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def test_the_other_worker_serves_an_upsert_and_a_delete_within_a_second(
    make_client: Callable[..., TestClient], redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    redis = {"url": redis_url, "key_prefix": redis_prefix}
    a = make_client(redis=redis)
    # the second worker: its own embedded store (one process per folder), the same Redis
    b = make_client(redis=redis, data_dir=tmp_path / "b", qdrant={"path": str(tmp_path / "b" / "qdrant")})
    assert a.get("/readyz").status_code == 200 and b.get("/readyz").status_code == 200
    assert (
        a.post("/search", json={"query": "x"}).json()["index_version"]
        == b.post("/search", json={"query": "x"}).json()["index_version"]
    )
    assert not found(b, "NEW-1")
    assert put(a, [NEW]).status_code == 200
    assert _eventually(lambda: found(b, "NEW-1") and recommendable(b, "NEW-1"))
    assert delete(a, ["NEW-1"]).status_code == 200
    assert _eventually(lambda: not recommendable(b, "NEW-1"))
