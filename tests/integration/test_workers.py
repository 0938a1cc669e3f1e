"""Embedded multi-process mode, as real processes: the supervisor, one writer and one reader on a
shared TCP socket, embedded Qdrant and the item log in a temporary data dir, no Redis.

Each process is also reachable on its own unix socket (``{data_dir}/run/worker-<i>.sock``; 0 is
the writer), so every check names the process it talks to."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.config import Settings
from service.workers import socket_dir, worker_socket
from tests.api.test_admin import wait_job
from tests.api.test_embed import assert_error
from tests.api.test_items import NEW, QUERY
from tests.conftest import ADMIN_TOKEN, TEXT_DIM, TinyArtifacts, admin_headers, make_catalog, write_jsonl

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _eventually(check: Callable[[], bool], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while True:
        with contextlib.suppress(httpx.TransportError):
            if check():
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    port: int
    log: Path
    clients: list[httpx.Client]

    @property
    def writer(self) -> httpx.Client:
        return self.clients[0]

    @property
    def reader(self) -> httpx.Client:
        return self.clients[1]

    def pids(self, name: str) -> list[int]:
        """Every pid the supervisor logged for ``name`` (writer, reader-1), oldest first."""
        return [int(m) for m in re.findall(rf"started {name} \(pid (\d+)\)", self.log.read_text())]

    def ready(self, client: httpx.Client) -> bool:
        return client.get("/readyz", timeout=2).status_code == 200


def _client(sock: Path) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://recsvc", timeout=30)


@pytest.fixture
def service(tiny_artifacts: TinyArtifacts, tmp_path: Path) -> Iterator[Service]:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSVC_")}
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "RECSVC_ARTIFACTS_DIR": str(tiny_artifacts.artifacts_dir),
            "RECSVC_DATA_DIR": str(data_dir),
            "RECSVC_ADMIN_TOKEN": ADMIN_TOKEN,
            "RECSVC_DEVICE": "cpu",
            "RECSVC_WORKERS__POLL_S": "0.05",
            "RECSVC_WORKERS__RESTART_DELAY_S": "0.2",
            "RECSVC_REDIS__CACHE_TTL_S": "0",
            "RECSVC_LOG_LEVEL": "WARNING",
        }
    )
    port = _free_port()
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.serve_fake_workers", str(port), "2", str(TEXT_DIM)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    sockets = socket_dir(Settings(data_dir=data_dir))  # {data_dir}/run unless that path is too long
    clients = [_client(worker_socket(sockets, i)) for i in range(2)]
    svc = Service(proc, data_dir, port, log, clients)
    try:
        ok = _eventually(lambda: all(svc.ready(c) for c in clients), START_TIMEOUT_S)
        assert ok, log.read_text()[-4000:]
        yield svc
    finally:
        for c in clients:
            c.close()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # nothing may outlive the test


def _index_version(client: httpx.Client) -> str:
    resp = client.post("/search", json={"query": "hair", "k": 1})
    assert resp.status_code == 200, resp.text
    version: str = resp.json()["index_version"]
    return version


def _found(client: httpx.Client, item_id: str) -> bool:
    resp = client.post("/search", json=QUERY)
    assert resp.status_code == 200, resp.text
    return any(it["item_id"] == item_id for it in resp.json()["items"])


def _recommendable(client: httpx.Client, item_id: str) -> bool:
    return client.post("/recommend", json={"history": [item_id], "k": 5}).status_code == 200


def test_the_reader_follows_a_reindex_and_a_rollback_of_the_writer(
    service: Service, tiny_artifacts: TinyArtifacts
) -> None:
    first = _index_version(service.writer)
    assert _index_version(service.reader) == first
    catalogs = service.data_dir / "catalogs"
    write_jsonl(catalogs / "more.jsonl", tiny_artifacts.catalog + make_catalog(20, seed=3, prefix="M"))
    # started through the reader: forwarded to the writer, which runs it
    resp = service.reader.post("/admin/reindex", json={"catalog_path": "more.jsonl"}, headers=admin_headers())
    assert resp.status_code == 202, resp.text
    job = wait_job(service.reader, resp.json()["job_id"])  # type: ignore[arg-type]
    assert job["status"] == "succeeded", job
    second = job["collection"]
    assert second != first
    assert _index_version(service.writer) == second
    assert _eventually(lambda: _index_version(service.reader) == second, 2.0)
    rec = service.reader.post("/recommend", json={"history": ["M0001"], "k": 3})
    assert rec.status_code == 200 and rec.json()["index_version"] == second, rec.text
    ready = service.reader.get("/readyz").json()
    assert ready["index_version"] == second

    # rollback through the reader: both serve the first collection again
    resp = service.reader.post("/admin/rollback", json={}, headers=admin_headers())
    assert resp.status_code == 200, resp.text
    assert resp.json()["collection"] == first
    assert _index_version(service.writer) == first
    assert _eventually(lambda: _index_version(service.reader) == first, 2.0)
    assert_error(service.reader.post("/recommend", json={"history": ["M0001"], "k": 3}), 422, "unknown_item")


def test_an_item_change_through_either_process_is_served_by_both_within_a_second(service: Service) -> None:
    assert not _found(service.writer, "NEW-1") and not _found(service.reader, "NEW-1")
    resp = service.reader.put("/admin/items", json={"items": [NEW]}, headers=admin_headers())
    assert resp.status_code == 200, resp.text
    assert resp.json()["created"] == 1
    assert _found(service.writer, "NEW-1")  # the writer applied it before answering
    assert _eventually(lambda: _found(service.reader, "NEW-1") and _recommendable(service.reader, "NEW-1"), 1.0)

    resp = service.writer.request("DELETE", "/admin/items", json={"ids": ["NEW-1"]}, headers=admin_headers())
    assert resp.status_code == 200 and resp.json()["deleted"] == 1, resp.text
    assert _eventually(lambda: not _recommendable(service.reader, "NEW-1"), 1.0)
    assert not _found(service.reader, "NEW-1")


def test_admin_answers_are_the_writers_whichever_process_gets_them(service: Service) -> None:
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/admin/collections", {}),
        ("GET", "/admin/reindex/nope", {}),
        ("POST", "/admin/reindex", {"json": {"catalog_path": "../etc/passwd"}}),
        ("POST", "/admin/rollback", {"json": {}}),
        ("PUT", "/admin/items", {"json": {"items": [{"item_id": "X"}]}}),
    ]
    for method, path, kw in cases:
        a = service.writer.request(method, path, headers=admin_headers(), **kw)
        b = service.reader.request(method, path, headers=admin_headers(), **kw)
        assert (a.status_code, a.json()) == (b.status_code, b.json()), (path, a.text, b.text)
    assert_error(service.reader.get("/admin/reindex/nope", headers=admin_headers()), 404, "job_not_found")
    assert_error(service.reader.post("/admin/rollback", json={}, headers=admin_headers()), 409, "rollback_unavailable")
    err = assert_error(
        service.reader.post("/admin/reindex", json={"catalog_path": "../x"}, headers=admin_headers()),
        422,
        "invalid_catalog_path",
    )
    assert err["details"]["catalog_path"] == "../x"
    # the token is checked by the writer, on the forwarded header
    resp = service.reader.get("/admin/collections")
    assert_error(resp, 401, "unauthorized")
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert_error(
        service.reader.get("/admin/collections", headers=admin_headers("wrong-token-wrong-token")), 401, "unauthorized"
    )
    rid = "test-request-id-123"
    resp = service.reader.get("/admin/collections", headers={**admin_headers(), "X-Request-ID": rid})
    assert resp.status_code == 200 and resp.headers["x-request-id"] == rid
    assert resp.headers.get_list("date") and len(resp.headers.get_list("date")) == 1
    # and through the shared TCP port, whichever process accepts the connection
    for _ in range(6):
        with httpx.Client(base_url=f"http://127.0.0.1:{service.port}") as tcp:
            assert tcp.get("/admin/collections", headers=admin_headers()).status_code == 200


def test_metrics_from_any_process_hold_every_process(service: Service) -> None:
    assert service.reader.post("/recommend", json={"history": ["P0001"], "k": 3}).status_code == 200
    assert service.writer.post("/recommend", json={"history": ["P0001"], "k": 3}).status_code == 200
    for client in (service.writer, service.reader):
        text = client.get("/metrics").text
        assert 'recsvc_worker_up{worker="writer"} 1.0' in text and 'recsvc_worker_up{worker="reader-1"} 1.0' in text
        for name in ("writer", "reader-1"):
            line = next(
                ln
                for ln in text.splitlines()
                if ln.startswith("recsvc_requests_total{")
                and 'route="/recommend"' in ln
                and f'worker="{name}"' in ln
                and 'status="200"' in ln
            )
            assert float(line.rsplit(" ", 1)[1]) >= 1, line
        types = [ln for ln in text.splitlines() if ln.startswith("# TYPE ")]
        assert len(types) == len(set(types)) and "# TYPE recsvc_requests_total counter" in types  # one family each
    # a process asked for its own metrics only (what the merging process asks the others)
    own = service.reader.get("/metrics", headers={"x-recsvc-metrics-scope": "process"}).text
    assert "recsvc_worker_up" not in own and 'worker="' not in own


def test_a_second_reindex_while_one_runs_is_409_from_either_process(
    service: Service, tiny_artifacts: TinyArtifacts
) -> None:
    write_jsonl(
        service.data_dir / "catalogs" / "big.jsonl", tiny_artifacts.catalog + make_catalog(3000, seed=9, prefix="B")
    )
    resp = service.reader.post("/admin/reindex", json={"catalog_path": "big.jsonl"}, headers=admin_headers())
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    for client in (service.writer, service.reader):
        again = client.post("/admin/reindex", json={"catalog_path": "big.jsonl"}, headers=admin_headers())
        if again.status_code == 202:  # the first one finished in between: a release, not a lapse
            assert wait_job(client, job_id)["status"] == "succeeded"  # type: ignore[arg-type]
            job_id = again.json()["job_id"]
            continue
        err = assert_error(again, 409, "reindex_in_progress")
        assert err["details"]["job_id"] == job_id
    assert wait_job(service.reader, job_id, timeout=120)["status"] == "succeeded"  # type: ignore[arg-type]


def test_a_killed_reader_is_started_again_and_a_killed_writer_too(service: Service) -> None:
    (reader_pid,) = service.pids("reader-1")
    os.kill(reader_pid, signal.SIGKILL)
    assert _eventually(lambda: len(service.pids("reader-1")) == 2, 30), service.log.read_text()[-3000:]
    assert _eventually(lambda: service.ready(service.reader), START_TIMEOUT_S)
    assert service.pids("reader-1")[-1] != reader_pid
    assert _index_version(service.reader) == _index_version(service.writer)

    (writer_pid,) = service.pids("writer")
    os.kill(writer_pid, signal.SIGKILL)
    # reads go on in the reader meanwhile; admin calls reach the new writer once it is up
    assert service.reader.post("/recommend", json={"history": ["P0001"], "k": 3}).status_code == 200
    assert _eventually(lambda: len(service.pids("writer")) == 2, 30), service.log.read_text()[-3000:]
    assert _eventually(lambda: service.ready(service.writer), START_TIMEOUT_S)
    assert service.reader.get("/admin/collections", headers=admin_headers()).status_code == 200
    assert service.proc.poll() is None


def test_sigterm_stops_every_process_and_removes_the_sockets(service: Service) -> None:
    pids = [*service.pids("writer"), *service.pids("reader-1")]
    os.kill(service.proc.pid, signal.SIGTERM)
    assert service.proc.wait(timeout=60) == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert not list(socket_dir(Settings(data_dir=service.data_dir)).glob("*.sock"))
