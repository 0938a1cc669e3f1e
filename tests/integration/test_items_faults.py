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
