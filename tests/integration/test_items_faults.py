"""kill -9 of a real service process (uvicorn) while items are being upserted: every upsert
answered 200 before the kill is served after the restart."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import TinyArtifacts
from tests.integration.test_faults import ServiceProcess, service_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_acknowledged_upserts_survive_kill9(tiny_artifacts: TinyArtifacts, tmp_path: Path, redis_prefix: str) -> None:
    svc = ServiceProcess(service_env(tiny_artifacts, tmp_path, None, redis_prefix), tmp_path)
    acked: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            ids = [f"K{i}-{j}" for j in range(5)]
            items = [{"item_id": x, "title": f"Crash test item {x}"} for x in ids]
            try:
                resp = svc.admin("PUT", "/admin/items", json={"items": items})
            except httpx.TransportError:
                return  # the process is gone: this batch was never acknowledged
            if resp.status_code == 200:
                acked.extend(ids)
            i += 1

    try:
        svc.start()
        t = threading.Thread(target=writer)
        t.start()
        while len(acked) < 40:
            assert t.is_alive(), "writer stopped before the kill"
            threading.Event().wait(0.02)
        svc.kill9()
        stop.set()
        t.join(timeout=30)
        svc.start()
        lost = [x for x in acked if svc.http.post("/recommend", json={"history": [x], "k": 3}).status_code != 200]
        assert not lost, f"{len(lost)} of {len(acked)} acknowledged items lost: {lost[:5]}"
    finally:
        stop.set()
        svc.stop()


def test_acknowledged_updates_survive_kill9_during_compactions(
    tiny_artifacts: TinyArtifacts, tmp_path: Path, redis_prefix: str
) -> None:
    """The writer re-upserts the same ids (new titles) with compaction after every few superseded
    lines, so the kill lands before, during or after a rewrite: the latest acknowledged title of
    every id is served after the restart."""
    env = service_env(tiny_artifacts, tmp_path, None, redis_prefix)
    env["RECSVC_ITEMS__COMPACT_SUPERSEDED_LINES"] = "5"
    svc = ServiceProcess(env, tmp_path)
    latest: dict[str, str] = {}
    batches = 0
    stop = threading.Event()

    def writer() -> None:
        nonlocal batches
        i = 0
        while not stop.is_set():
            items = [{"item_id": f"U{j}", "title": f"Updated item {j} version {i}"} for j in range(5)]
            try:
                resp = svc.admin("PUT", "/admin/items", json={"items": items})
            except httpx.TransportError:
                return
            if resp.status_code == 200:
                latest.update({it["item_id"]: it["title"] for it in items})
                batches += 1
            i += 1

    try:
        svc.start()
        t = threading.Thread(target=writer)
        t.start()
        while batches < 12:
            assert t.is_alive(), "writer stopped before the kill"
            threading.Event().wait(0.02)
        svc.kill9()
        stop.set()
        t.join(timeout=30)
        svc.start()
        log = tmp_path / "var" / "items" / "log.jsonl"
        assert len(log.read_text().splitlines()) < 5 * batches  # compactions happened
        for item_id, title in latest.items():
            resp = svc.http.post("/search", json={"query": title, "k": 100})  # every item of the tiny set
            assert resp.status_code == 200, resp.text
            got = {it["item_id"]: it["payload"]["title"] for it in resp.json()["items"]}
            assert got.get(item_id) == title, (item_id, title, got.get(item_id))
    finally:
        stop.set()
        svc.stop()
