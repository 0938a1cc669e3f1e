"""Several processes on one node with embedded Qdrant: one writer, N-1 readers.

Embedded Qdrant (local mode) locks its folder to one process, and without Redis the reindex lease,
job records and "alias moved" messages live in one process. So one process, the **writer**, keeps
all of that: it opens the Qdrant folder, runs reindexes and rollbacks, owns the items API and the
item log, and answers every ``/admin`` route. The other processes, **readers**, serve ``/recommend``,
``/embed``, ``/search``, ``/v1/*``, the UI and the probes from a read-only copy of the writer's served
snapshot, each with its own models, encoder and batcher, so every core runs requests.

- The writer **publishes** every snapshot it starts serving (start, alias swap after a reindex,
  rollback, item upserts/deletes; :class:`SnapshotPublisher` listens on ``QdrantStore.set_snapshot``)
  as one ``.npz`` file (text and seqrec vectors, payloads, the semantic-ID table) under
  ``RECSVC_WORKERS__PUBLISH_DIR``, then atomically replaces the pointer file ``current.json`` that
  names it (``os.replace``: a reader sees the old pointer or the new one, never half a file).
  Changes arriving while a file is written are coalesced into the next one.
- A reader (:class:`SnapshotFollower`) stats the pointer every ``RECSVC_WORKERS__POLL_S`` and swaps in
  the new snapshot in one assignment (requests holding the old one finish on it), with the writer's
  sid table (same collision digits in every process) and the transition prior's alignment dropped.
- A request for ``/admin/...`` that lands on a reader is forwarded unchanged (method, path, query,
  headers with the bearer token, body) to the writer over its unix socket and the writer's answer
  (status, headers, body) is passed back (:class:`ForwardToWriter`), so every admin route works
  whichever process the kernel hands the connection to; the writer checks the token as always.

The parent process (``service.supervisor``) opens the TCP socket once, starts the processes on it,
restarts one that dies and stops them all on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
import numpy as np
import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.config import QdrantSettings, Settings
from service.core.index import SearchFilter, SearchHit
from service.core.items import item_from_dict
from service.errors import ConfigurationError, WriterUnavailableError, error_body
from service.stores.qdrant import CatalogSnapshot, QdrantStore

if TYPE_CHECKING:
    from service.artifacts import LoadedArtifacts
    from service.recommender.generative import GenerativeRuntime
    from service.state import AppState

logger = logging.getLogger(__name__)

POINTER = "current.json"
KEEP_FILES = 3  # published snapshot files kept (a reader may still be reading the previous one)
FORMAT = 1
# Unix socket paths are limited to 107 bytes (sun_path); leave room for "worker-NN.sock".
MAX_SOCKET_DIR = 90
WRITER_INDEX = 0


@dataclass(frozen=True)
class ProcessRole:
    """Which process this is in the embedded multi-process mode: index 0 is the writer."""

    index: int
    run_id: str  # the parent's id: readers only trust a pointer the writer of this run wrote
    workers: int  # processes in all (writer + readers)
    socket_dir: Path
    publish_dir: Path
    poll_s: float
    forward_timeout_s: float

    @property
    def kind(self) -> Literal["writer", "reader"]:
        return "writer" if self.index == WRITER_INDEX else "reader"

    @property
    def writer_socket(self) -> Path:
        return worker_socket(self.socket_dir, WRITER_INDEX)

    @property
    def name(self) -> str:
        return process_name(self.index)


def process_name(index: int) -> str:
    return "writer" if index == WRITER_INDEX else f"reader-{index}"


def worker_socket(socket_dir: Path, index: int) -> Path:
    return socket_dir / f"worker-{index}.sock"


def socket_dir(settings: Settings) -> Path:
    """Folder of the processes' unix sockets: the configured one, else ``{data_dir}/run``, else (path too
    long for a unix socket) a folder under the system temp dir named by a hash of the data dir."""
    given = settings.workers.socket_dir
    if given is not None:
        path = Path(given).absolute()
        if len(os.fsencode(str(path))) > MAX_SOCKET_DIR:
            raise ConfigurationError(
                f"RECSVC_WORKERS__SOCKET_DIR {path} is too long for a unix socket path "
                f"(at most {MAX_SOCKET_DIR} bytes): pick a shorter folder"
            )
        return path
    path = (settings.data_dir / "run").absolute()
    if len(os.fsencode(str(path))) <= MAX_SOCKET_DIR:
        return path
    digest = hashlib.sha256(str(settings.data_dir.absolute()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"recsvc-{digest}"


def make_role(settings: Settings, index: int, run_id: str, workers: int) -> ProcessRole:
    assert settings.workers.publish_dir is not None
    return ProcessRole(
        index=index,
        run_id=run_id,
        workers=workers,
        socket_dir=socket_dir(settings),
        publish_dir=Path(settings.workers.publish_dir).absolute(),
        poll_s=settings.workers.poll_s,
        forward_timeout_s=settings.workers.forward_timeout_s,
    )


# ================================================================ published snapshot files
@dataclass(frozen=True)
class Pointer:
    """What ``current.json`` says: which file holds the served snapshot."""

    generation: str
    file: str
    collection: str
    items: int
    model_version: str
    run_id: str

    @classmethod
    def read(cls, publish_dir: Path) -> Pointer | None:
        try:
            d = json.loads((publish_dir / POINTER).read_bytes())
            return cls(**{k: d[k] for k in cls.__dataclass_fields__})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:  # replaced atomically: never torn
            logger.warning("unreadable snapshot pointer %s: %s", publish_dir / POINTER, exc)
            return None


def write_snapshot(
    publish_dir: Path,
    snapshot: CatalogSnapshot,
    *,
    sids: np.ndarray | None,
    model_version: str,
    run_id: str,
) -> Pointer:
    """Write ``snapshot`` as a new file, then point ``current.json`` at it (both atomic renames);
    older files beyond the newest :data:`KEEP_FILES` are removed. Blocking (call it in a thread)."""
    publish_dir.mkdir(parents=True, exist_ok=True)
    generation = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    name = f"snapshot-{generation}.npz"
    arrays: dict[str, np.ndarray] = {
        "format": np.asarray([FORMAT], dtype=np.int64),
        "text": snapshot.text_vectors,  # [N, T]
        "payloads": np.frombuffer(orjson.dumps(snapshot.payloads), dtype=np.uint8),
    }
    if snapshot.seqrec_vectors is not None:
        arrays["seqrec"] = snapshot.seqrec_vectors  # [N, D]
    if sids is not None:
        arrays["sids"] = np.asarray(sids, dtype=np.int32)  # [N, depth]
    tmp = publish_dir / f".{name}.tmp"
    with tmp.open("wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, publish_dir / name)
    pointer = Pointer(generation, name, snapshot.collection, len(snapshot), model_version, run_id)
    tmp = publish_dir / f".{POINTER}.tmp"
    tmp.write_text(json.dumps(pointer.__dict__))
    os.replace(tmp, publish_dir / POINTER)
    for old in sorted(publish_dir.glob("snapshot-*.npz"))[:-KEEP_FILES]:
        with contextlib.suppress(OSError):
            old.unlink()
    return pointer


def read_snapshot(publish_dir: Path, pointer: Pointer) -> tuple[CatalogSnapshot, np.ndarray | None]:
    """The snapshot a pointer names, and its sid table (None when the writer published none)."""
    with np.load(publish_dir / pointer.file, allow_pickle=False) as z:
        if int(z["format"][0]) != FORMAT:
            raise ValueError(f"published snapshot format {int(z['format'][0])}, expected {FORMAT}")
        text = np.ascontiguousarray(z["text"], dtype=np.float32)
        seqrec = np.ascontiguousarray(z["seqrec"], dtype=np.float32) if "seqrec" in z.files else None
        sids = np.asarray(z["sids"], dtype=np.int32) if "sids" in z.files else None
        payloads: list[dict[str, Any]] = orjson.loads(z["payloads"].tobytes())
    items = [item_from_dict(p, allow_empty_title=True) for p in payloads]
    snapshot = CatalogSnapshot(
        collection=pointer.collection, items=items, payloads=payloads, text_vectors=text, seqrec_vectors=seqrec
    )
    return snapshot, sids


class SnapshotPublisher:
    """Writer side: publishes the served snapshot at start and after every change (coalesced)."""

    def __init__(
        self,
        store: QdrantStore,
        generative: GenerativeRuntime | None,
        publish_dir: Path,
        *,
        model_version: str,
        run_id: str,
    ) -> None:
        self.store = store
        self.generative = generative
        self.publish_dir = publish_dir
        self.model_version = model_version
        self.run_id = run_id
        self.published: Pointer | None = None
        self._dirty = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._published_snapshot: CatalogSnapshot | None = None

    def _mark(self, snapshot: CatalogSnapshot) -> None:
        """``QdrantStore.on_snapshot`` listener: may run on any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._dirty.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.store.on_snapshot.append(self._mark)
        await self.publish()
        self._task = asyncio.create_task(self._run(), name="recsvc-snapshot-publisher")

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.publish()
            except Exception:
                logger.exception("could not publish the served snapshot; retrying in 1 s")
                await asyncio.sleep(1.0)
                self._dirty.set()

    async def publish(self) -> None:
        snapshot = self.store.snapshot  # on the loop thread: the one served right now
        if snapshot is self._published_snapshot:
            return
        sids = None
        if self.generative is not None:
            # The writer's sid table of exactly this snapshot (prepared before the swap, or refreshed with
            # the item change just before set_snapshot); derived here when not cached yet.
            sids = self.generative.cached_sids(snapshot.version, snapshot.item_ids)
            if sids is None:
                cat = await asyncio.to_thread(
                    self.generative.catalog, snapshot.version, snapshot.item_ids, snapshot.text_vectors
                )
                sids = cat.table.sids if cat.item_ids == snapshot.item_ids else None
        t0 = time.perf_counter()
        self.published = await asyncio.to_thread(
            write_snapshot,
            self.publish_dir,
            snapshot,
            sids=sids,
            model_version=self.model_version,
            run_id=self.run_id,
        )
        self._published_snapshot = snapshot
        logger.info(
            "published %s (%d items) as %s in %.0f ms",
            snapshot.collection,
            len(snapshot),
            self.published.file,
            1000 * (time.perf_counter() - t0),
        )

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.store.on_snapshot.remove(self._mark)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.store.has_snapshot and self.store.snapshot is not self._published_snapshot:
            with contextlib.suppress(Exception):
                await self.publish()  # a change that came in the last moment


# ================================================================ reader side
class FollowerStore(QdrantStore):
    """A reader's store: no Qdrant folder (an empty in-memory client is never used for data); the served
    snapshot is the writer's published one, searched exactly (same brute-force scores as local mode)."""

    def __init__(self, settings: QdrantSettings) -> None:
        super().__init__(settings.model_copy(update={"url": None, "path": None}))
        self.use_exact_search = True

    async def search(
        self, vector_name: str, vector: np.ndarray, k: int, flt: SearchFilter | None, snapshot: CatalogSnapshot
    ) -> list[SearchHit]:
        return snapshot.searcher.search(vector_name, vector, k, flt)

    async def alias_target(self) -> str | None:
        return self._snapshot.collection if self._snapshot is not None else None

    async def count(self) -> int:
        return len(self._snapshot) if self._snapshot is not None else 0


class SnapshotFollower:
    """Reader side: loads the writer's published snapshot and follows the pointer file."""

    def __init__(
        self,
        role: ProcessRole,
        store: QdrantStore,
        generative: GenerativeRuntime | None,
        artifacts: LoadedArtifacts,
    ) -> None:
        self.role = role
        self.store = store
        self.generative = generative
        self.artifacts = artifacts
        self.current: Pointer | None = None
        self._stat: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def _pointer_stat(self) -> tuple[int, int, int] | None:
        try:
            st = (self.role.publish_dir / POINTER).stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    async def start(self, wait_s: float) -> None:
        """Serve the first snapshot this run's writer published (waiting up to ``wait_s`` while it
        starts or builds the index), then follow the pointer in the background."""
        deadline = time.monotonic() + wait_s
        while True:
            pointer = Pointer.read(self.role.publish_dir)
            if pointer is not None and pointer.run_id == self.role.run_id and await self._load(pointer):
                break
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"no snapshot from the writer appeared in {self.role.publish_dir} within {wait_s:.0f}s"
                )
            await asyncio.sleep(min(self.role.poll_s, 0.5))
        self._task = asyncio.create_task(self._follow(), name="recsvc-snapshot-follower")

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.role.poll_s)
            try:
                await self.check()
            except Exception:
                logger.exception("could not load the published snapshot; retrying")

    async def check(self) -> bool:
        """One poll: load the pointer's snapshot when the pointer changed. True when it swapped."""
        st = await asyncio.to_thread(self._pointer_stat)
        if st is None or st == self._stat:
            return False
        pointer = await asyncio.to_thread(Pointer.read, self.role.publish_dir)
        if (
            pointer is None
            or pointer.run_id != self.role.run_id  # not our writer's (never trusted)
            or (self.current is not None and pointer.generation == self.current.generation)
        ):
            self._stat = st
            return False
        return await self._load(pointer, st)

    async def _load(self, pointer: Pointer, st: tuple[int, int, int] | None = None) -> bool:
        if pointer.model_version != self.artifacts.version:
            logger.error(
                "the writer published %s for models %s, but this reader serves %s; not loading it",
                pointer.collection,
                pointer.model_version,
                self.artifacts.version,
            )
            self._stat = st
            return False
        try:
            snapshot, sids = await asyncio.to_thread(read_snapshot, self.role.publish_dir, pointer)
        except FileNotFoundError:
            return False  # replaced by a newer one while we looked: the next poll reads that
        await asyncio.to_thread(self._prepare, snapshot, sids)
        self.store.set_snapshot(snapshot)
        self.current, self._stat = pointer, st
        return True

    def _prepare(self, snapshot: CatalogSnapshot, sids: np.ndarray | None) -> None:
        """The sid table and the prior's row alignment are cached by the snapshot's ``version``
        (collection + content digest), so a new snapshot never reuses an older one's rows; the
        writer's sid table is adopted under that version (same collision digits in every process)."""
        if self.generative is not None and sids is not None:
            self.generative.adopt_sids(snapshot.version, snapshot.item_ids, sids)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def reader_start(role: ProcessRole, wait_s: float = 900.0) -> Any:
    """The ``reader`` argument of :func:`service.state.build_state` for this role."""

    async def start(
        store: QdrantStore,
        generative: GenerativeRuntime | None,
        artifacts: LoadedArtifacts,
        stack: contextlib.AsyncExitStack,
    ) -> None:
        follower = SnapshotFollower(role, store, generative, artifacts)
        await follower.start(wait_s)
        stack.push_async_callback(follower.close)

    return start


# ================================================================ forwarding /admin to the writer
# Hop-by-hop headers (RFC 9110 7.6.1) and the ones re-computed for the forwarded body.
_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
    }
)


# uvicorn adds its own date and server headers; the body is passed on decoded.
_HOP_RESPONSE = _HOP | {b"date", b"server", b"content-encoding"}


class WriterLink:
    """The reader's HTTP client to the writer's unix socket (one per process, closed in the lifespan)."""

    def __init__(self, socket_path: Path, timeout_s: float) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=str(self.socket_path)),
                base_url="http://recsvc-writer",
                timeout=httpx.Timeout(self.timeout_s, connect=5.0),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class ForwardToWriter:
    """Pure ASGI middleware of a reader: ``/admin`` requests go to the writer, its answer comes back as is."""

    def __init__(self, app: ASGIApp, link: WriterLink, max_bytes: int, prefixes: tuple[str, ...] = ("/admin",)) -> None:
        self.app = app
        self.link = link
        self.max_bytes = max_bytes
        self.prefixes = prefixes

    def _forwarded(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._forwarded(scope["path"]):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await _send_json(
                    send,
                    413,
                    error_body(
                        "payload_too_large",
                        f"request body exceeds the limit of {self.max_bytes} bytes",
                        {"limit": self.max_bytes},
                    ),
                )
                return
            if not message.get("more_body", False):
                break
        path = scope.get("raw_path") or scope["path"].encode()
        target = path.decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP]
        try:
            request = self.link.client.build_request(scope["method"], target, headers=headers, content=bytes(body))
            response = await self.link.client.send(request)
        except httpx.HTTPError as exc:
            logger.warning("could not forward %s %s to the writer: %s", scope["method"], scope["path"], exc)
            err = WriterUnavailableError(
                "the writer process (admin routes) did not answer; retry shortly", {"reason": exc.__class__.__name__}
            )
            headers = [(k.lower().encode(), v.encode()) for k, v in (err.headers or {}).items()]
            await _send_json(send, err.status_code, error_body(err.code, err.message, err.details), headers)
            return
        content = response.content
        out = [(k, v) for k, v in response.headers.raw if k.lower() not in _HOP_RESPONSE]
        out.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": response.status_code, "headers": out})
        await send({"type": "http.response.body", "body": content})


async def _send_json(
    send: Send, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = orjson.dumps(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    start: Message = {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    await send(start)
    await send({"type": "http.response.body", "body": data})


# ================================================================ /metrics of every process
# A scrape reaches one process (whichever accepts the connection); that one asks the others over their
# unix sockets with this header (answer: your own registry only) and merges all of them.
METRICS_SCOPE_HEADER = "x-recsvc-metrics-scope"
METRICS_SCOPE_PROCESS = "process"
METRICS_TIMEOUT_S = 2.0


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


async def gather_metrics(role: ProcessRole, own: bytes) -> bytes:
    """Every process's metrics in one exposition, each sample labelled ``worker`` (writer, reader-1, ...),
    plus ``recsvc_worker_up{worker}`` (0: that process did not answer within 2 s, e.g. restarting)."""

    async def fetch(index: int) -> bytes | None:
        if index == role.index:
            return own
        transport = httpx.AsyncHTTPTransport(uds=str(worker_socket(role.socket_dir, index)))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://recsvc", timeout=METRICS_TIMEOUT_S) as c:
                resp = await c.get("/metrics", headers={METRICS_SCOPE_HEADER: METRICS_SCOPE_PROCESS})
                return resp.content if resp.status_code == 200 else None
        except httpx.HTTPError:
            return None

    texts = await asyncio.gather(*(fetch(i) for i in range(role.workers)))
    families: dict[str, Metric] = {}
    up = Metric("recsvc_worker_up", "Whether the process answered this scrape (embedded multi-process mode).", "gauge")
    for index, text in enumerate(texts):
        name = process_name(index)
        up.add_sample("recsvc_worker_up", {"worker": name}, 0.0 if text is None else 1.0)
        if text is None:
            continue
        for fam in text_string_to_metric_families(text.decode("utf-8")):
            merged = families.get(fam.name)
            if merged is None:
                merged = families[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            for sample in fam.samples:
                merged.samples.append(sample._replace(labels={**sample.labels, "worker": name}))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([*families.values(), up]))
    return bytes(generate_latest(registry))


async def start_publisher(state: AppState, role: ProcessRole) -> SnapshotPublisher:
    """The writer's publisher: the served snapshot now, then after every change; closed with the state."""
    publisher = SnapshotPublisher(
        state.store,
        state.recommender.generative,
        role.publish_dir,
        model_version=state.artifacts.version,
        run_id=role.run_id,
    )
    await publisher.start()
    state._stack.push_async_callback(publisher.close)
    return publisher
