"""Item log compaction in the service: triggered by superseded lines (and at start / after a reindex),
never losing a write acknowledged while it runs; a restart after it serves the same items."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.api.test_admin import wait_job
from tests.api.test_items import NEW, delete, put
from tests.conftest import TinyArtifacts, admin_headers, write_jsonl


def served(client: TestClient) -> Any:
    return client.app.state.recsvc  # type: ignore[attr-defined]


def wait_compactions(client: TestClient, n: int, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while served(client).items.log.compactions < n:
        assert time.monotonic() < deadline, "no compaction"
        time.sleep(0.02)
    task = served(client).items._compaction
    while task is not None and not task.done():
        time.sleep(0.02)


def test_writes_racing_with_compactions_survive_a_restart(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make_client(items={"compact_superseded_lines": 3})
    log_path = tmp_path / "var" / "items" / "log.jsonl"
    acked: dict[str, float] = {}
    errors: list[str] = []

    def writer(w: int) -> None:  # re-upserts the same few ids: every batch supersedes lines
        for n in range(15):
            price = float(n + 1)
            resp = put(client, [{**NEW, "item_id": f"W{w}-{i}", "price": price} for i in range(3)])
            if resp.status_code != 200:
                errors.append(resp.text)
                return
            acked.update({f"W{w}-{i}": price for i in range(3)})

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert delete(client, ["W0-0", "P0003"]).status_code == 200
    wait_compactions(client, 1)  # (more run while the writers go on; how many depends on the machine)
    state = served(client)
    version = state.store.snapshot.version
    lines = log_path.read_text().splitlines()
    assert len(lines) < 2 * 15 * 3  # compacted
    client.__exit__(None, None, None)

    again = make_client(items={"compact_superseded_lines": 3})
    snap = served(again).store.snapshot
    assert snap.version == version  # the same items, payloads included, as before the restart
    for iid, price in acked.items():
        if iid == "W0-0":
            assert iid not in snap.row_of
        else:
            assert snap.items[snap.row_of[iid]].price == price
    assert "P0003" not in snap.row_of
    # the compacted log has one line per id (the tombstones too)
    wait_compactions(again, 0)
    ids = [json.loads(x).get("item_id") or json.loads(x)["item"]["item_id"] for x in log_path.read_text().splitlines()]
    assert sorted(ids) == sorted(set(ids)) and {"W0-0", "P0003"} <= set(ids)


def test_a_reindex_that_absorbed_the_log_compacts_it(
    make_client: Callable[..., TestClient], tiny_artifacts: TinyArtifacts, tmp_path: Path
) -> None:
    client = make_client(items={"compact_superseded_lines": 0})  # no size trigger
    for price in (1.0, 2.0, 3.0):
        assert put(client, [{**NEW, "price": price}]).status_code == 200
    log = served(client).items.log
    assert log.superseded == 2 and log.compactions == 0
    catalog = write_jsonl(tmp_path / "catalog.jsonl", tiny_artifacts.catalog)
    resp = client.post("/admin/reindex", json={"catalog_path": str(catalog)}, headers=admin_headers())
    job = wait_job(client, resp.json()["job_id"])
    assert job["status"] == "succeeded", job
    wait_compactions(client, 1)
    assert log.superseded == 0 and len(log.path.read_text().splitlines()) == 1
    snap = served(client).store.snapshot
    assert snap.items[snap.row_of["NEW-1"]].price == 3.0
