"""Faults injected into real parts: kill -9 of the serving process in the middle of a reindex
(with a real redis-server and without Redis), and Redis stopped mid-traffic / down at start.

The service runs as its own uvicorn process (``tests.integration.serve_fake``) where a crash
must be real; Redis is a real ``redis-server`` this module starts and stops itself.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from tests.api.test_admin import wait_job
from tests.api.test_embed import assert_error
from tests.conftest import ADMIN_TOKEN, TEXT_DIM, TinyArtifacts, _free_port, admin_headers, make_catalog, write_jsonl

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 3.0


# ------------------------------------------------------------------ helpers
class RedisServer:
    """A redis-server on a fixed loopback port that a test can stop and start again."""

    def __init__(self, workdir: Path, port: int | None = None, password: str | None = None) -> None:
        self.exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.workdir = workdir
        self.port = port or _free_port()
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.workdir)]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 15
        while True:
            try:
                if client.ping():
                    break
            except redis.exceptions.ConnectionError:
                assert self.proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


class ServiceProcess:
    """``uvicorn`` serving the app with settings from the environment, like production."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def start(self, timeout: float = 180) -> None:
        self.port = _free_port()
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        log = (self.cwd / f"service-{self.port}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.serve_fake", str(self.port), str(TEXT_DIM)],
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"service exited: {self.log_tail()}"
            try:
                if self.http.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"service not ready: {self.log_tail()}"
            time.sleep(0.2)

    def log_tail(self) -> str:
        logs = sorted(self.cwd.glob("service-*.log"), key=lambda p: p.stat().st_mtime)
        return logs[-1].read_text(errors="replace")[-3000:] if logs else ""

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.http.close()

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, headers=admin_headers(), **kw)


def service_env(tiny: TinyArtifacts, tmp_path: Path, redis_url: str | None, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSVC_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "RECSVC_DATA_DIR": str(tmp_path / "var"),
            "RECSVC_ARTIFACTS_DIR": str(tiny.artifacts_dir),
            "RECSVC_ADMIN_TOKEN": ADMIN_TOKEN,
            "RECSVC_ENCODER_VARIANT": "fp32",
            "RECSVC_DEVICE": "cpu",
            "RECSVC_CATALOG_DIR": str(tmp_path / "catalogs"),
            "RECSVC_REINDEX_LEASE_S": str(LEASE_S),
            "RECSVC_LOG_LEVEL": "INFO",
            "OMP_NUM_THREADS": "1",
        }
    )
    if redis_url is not None:
        env["RECSVC_REDIS__URL"] = redis_url
        env["RECSVC_REDIS__KEY_PREFIX"] = prefix
    return env


def family_with_jobs(qdrant_path: Path) -> dict[str, str | None]:
    """Collections of the alias family -> the job that built them (the service must be stopped)."""
    from service.core.index import CatalogIndex, open_client

    client = open_client(None, str(qdrant_path))
    try:
        return {name: meta.get("job_id") for name, meta in CatalogIndex(client).family()}
    finally:
        client.close()


# ------------------------------------------------------ kill -9 mid-reindex
@pytest.mark.parametrize("with_redis", [True, False], ids=["redis", "in-process"])
def test_kill9_mid_reindex_then_restart(
    with_redis: bool, tiny_artifacts: TinyArtifacts, tmp_path: Path, redis_prefix: str, request: pytest.FixtureRequest
) -> None:
    redis_url = request.getfixturevalue("redis_url") if with_redis else None
    catalogs = tmp_path / "catalogs"
    write_jsonl(catalogs / "big.jsonl", tiny_artifacts.catalog + make_catalog(6000, seed=3, prefix="N"))
    svc = ServiceProcess(service_env(tiny_artifacts, tmp_path, redis_url, redis_prefix), tmp_path)
    try:
        svc.start()
        old = svc.http.get("/readyz").json()["index_version"]
        resp = svc.admin("POST", "/admin/reindex", json={"catalog_path": "big.jsonl"})
        assert resp.status_code == 202, resp.text
        dead_job = resp.json()["job_id"]
        # kill -9 while the new collection is being filled (a partial collection exists)
        deadline = time.monotonic() + 120
        while True:
            job = svc.admin("GET", f"/admin/reindex/{dead_job}").json()
            assert job["status"] in ("queued", "running"), f"job ended before the kill: {job}"
            if job["stage"] == "indexing" and job["progress"] > 0.6:
                break
            assert time.monotonic() < deadline, job
            time.sleep(0.02)
        svc.kill9()
        family = family_with_jobs(tmp_path / "var" / "qdrant")
        partial = [name for name, job_id in family.items() if job_id == dead_job]
        assert partial, f"no partial collection of the killed job: {family}"

        restarted_at = time.monotonic()
        svc.start()
        # the old collection keeps serving
        resp = svc.http.post("/recommend", json={"history": ["P0001", "P0002"], "k": 5})
        assert resp.status_code == 200 and resp.json()["index_version"] == old
        ready = svc.http.get("/readyz").json()
        assert ready["index_version"] == old and ready["degraded"] == []
        # a new reindex is accepted within one lease of the restart
        while True:
            resp = svc.admin("POST", "/admin/reindex", json={"catalog_path": None})
            if resp.status_code == 202:
                break
            assert_error(resp, 409, "reindex_in_progress")
            assert resp.json()["error"]["details"]["job_id"] == dead_job
            assert time.monotonic() - restarted_at < LEASE_S + 5, "the dead job's lock outlived its lease"
            time.sleep(0.2)
        new_job = resp.json()["job_id"]
        # the dead job: failed/abandoned in the shared job store (gone with the process without Redis)
        resp = svc.admin("GET", f"/admin/reindex/{dead_job}")
        if with_redis:
            dead = resp.json()
            assert dead["status"] == "failed" and dead["stage"] == "abandoned", dead
            assert "abandoned" in dead["error"]
        else:
            assert_error(resp, 404, "job_not_found")
        deadline = time.monotonic() + 60
        while (job := svc.admin("GET", f"/admin/reindex/{new_job}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert job["status"] == "succeeded", job
        listed = svc.admin("GET", "/admin/collections").json()
        assert listed["current"] == job["collection"] and listed["kept"] == [old]
        assert {c["name"] for c in listed["collections"]} == {old, job["collection"]}
        assert all(c["job_id"] != dead_job for c in listed["collections"])  # no partial collection left
        assert svc.http.post("/recommend", json={"history": ["P0001"]}).json()["index_version"] == job["collection"]
    finally:
        svc.stop()


def test_partial_collection_of_a_dead_job_is_dropped_at_start(
    tiny_artifacts: TinyArtifacts, tmp_path: Path, redis_prefix: str
) -> None:
    """Without Redis the process's memory is gone after kill -9; its partial collection in embedded
    Qdrant is found at the next start by the job id in its metadata and dropped, while a kept
    previous collection and collections of the offline build stay."""
    svc = ServiceProcess(service_env(tiny_artifacts, tmp_path, None, redis_prefix), tmp_path)
    try:
        svc.start()
        write_jsonl(tmp_path / "catalogs" / "c.jsonl", [*tiny_artifacts.catalog, {"item_id": "X1", "title": "x"}])
        resp = svc.admin("POST", "/admin/reindex", json={"catalog_path": "c.jsonl"})
        assert resp.status_code == 202, resp.text
        deadline = time.monotonic() + 60
        while svc.admin("GET", f"/admin/reindex/{resp.json()['job_id']}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        svc.kill9()
        # what a dead job leaves: a half-filled collection whose metadata names the job
        from service.core.index import CatalogIndex, open_client
        from service.core.items import item_from_dict

        client = open_client(None, str(tmp_path / "var" / "qdrant"))
        index = CatalogIndex(client)
        items = [item_from_dict(r) for r in tiny_artifacts.catalog[:5]]
        vecs = np.eye(5, TEXT_DIM, dtype=np.float32)
        partial = index.build(items, vecs, None, metadata={"job_id": "dead-job"})
        offline = index.build(items, vecs, None)  # no job id: pushed by `recsvc-train build`, left alone
        before = [n for n, _ in index.family()]
        client.close()
        assert partial in before and "items_v1" in before and "items_v2" in before

        svc.start()
        listed = svc.admin("GET", "/admin/collections").json()
        names = {c["name"] for c in listed["collections"]}
        assert partial not in names
        assert names == {"items_v1", "items_v2", offline} and listed["kept"] == ["items_v1"]
    finally:
        svc.stop()


# ------------------------------------------------------- Redis outages
def _hammer(client: TestClient, stop: threading.Event, codes: list[tuple[str, int]], i: int) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        history = [f"P{(i * 7 + n) % 48:04d}", f"P{(i + n * 3) % 48:04d}"]
        resp = client.post("/recommend", json={"history": history, "k": 5})
        codes.append(("recommend", resp.status_code))
        resp = client.post("/embed", json={"items": [{"title": f"item {n} of thread {i}"}]})
        codes.append(("embed", resp.status_code))


def _degraded_gauge(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('recsvc_degraded{component="redis"}'):
            return float(line.split()[-1])
    raise AssertionError("no recsvc_degraded gauge for redis")


def test_redis_stopped_mid_traffic_and_back(
    make_client: Callable[..., TestClient], own_redis: RedisServer, redis_prefix: str
) -> None:
    client = make_client(redis={"url": own_redis.url, "key_prefix": redis_prefix, "retry_s": 0.3})
    codes: list[tuple[str, int]] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_hammer, args=(client, stop, codes, i)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        own_redis.stop()
        served_before = len(codes)
        time.sleep(2.0)
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["degraded"] == ["redis"] and ready.json()["checks"]["redis"] is False
        assert _degraded_gauge(client) == 1.0
        # admin calls that need Redis: 503 with a clear code, not 500
        assert_error(client.post("/admin/reindex", headers=admin_headers()), 503, "redis_unavailable")
        assert_error(client.get("/admin/reindex/some-job", headers=admin_headers()), 503, "redis_unavailable")
        assert_error(client.post("/admin/rollback", headers=admin_headers()), 503, "redis_unavailable")
        assert len(codes) > served_before, "no request was served while Redis was down"
        own_redis.start()
        deadline = time.monotonic() + 20
        while client.get("/readyz").json()["degraded"]:
            assert time.monotonic() < deadline, "readyz still degraded after Redis came back"
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    failed = [c for c in codes if c[1] != 200]
    assert codes and not failed, f"{len(failed)} of {len(codes)} requests failed: {set(failed)}"
    assert _degraded_gauge(client) == 0.0
    # the cache works through Redis again
    req = {"history": ["P0003", "P0009"], "k": 4}
    assert client.post("/recommend", json=req).json()["cached"] is False
    assert client.post("/recommend", json=req).json()["cached"] is True
    peer = redis.Redis.from_url(own_redis.url)
    assert list(peer.scan_iter(f"{redis_prefix}:rec:*")), "no cache entry in Redis after it came back"
    # and so does the lease: a reindex runs, a second one gets 409
    resp = client.post("/admin/reindex", headers=admin_headers())
    assert resp.status_code == 202, resp.text
    assert_error(client.post("/admin/reindex", headers=admin_headers()), 409, "reindex_in_progress")
    assert wait_job(client, resp.json()["job_id"])["status"] == "succeeded"
    peer.close()


def test_start_with_redis_down_is_degraded_and_recovers(
    make_client: Callable[..., TestClient], tmp_path: Path, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path, password="s3cret-redis-pass")  # not started yet
    caplog.set_level(logging.WARNING)
    client = make_client(redis={"url": server.url, "key_prefix": redis_prefix, "retry_s": 0.3})
    warnings = "\n".join(r.getMessage() for r in caplog.records)
    assert "cannot reach Redis at redis://:***@127.0.0.1" in warnings
    assert "s3cret-redis-pass" not in caplog.text
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["degraded"] == ["redis"]
    assert client.post("/recommend", json={"history": ["P0001"]}).status_code == 200
    assert client.post("/embed", json={"items": [{"title": "a"}]}).status_code == 200
    assert_error(client.post("/admin/reindex", headers=admin_headers()), 503, "redis_unavailable")
    try:
        server.start()
        deadline = time.monotonic() + 20
        while client.get("/readyz").json()["degraded"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        resp = client.post("/admin/reindex", headers=admin_headers())
        assert resp.status_code == 202, resp.text
        assert wait_job(client, resp.json()["job_id"])["status"] == "succeeded"
    finally:
        server.stop()
    assert "s3cret-redis-pass" not in caplog.text
