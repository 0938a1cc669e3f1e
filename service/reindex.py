"""Reindex: re-embed a catalog, build a new collection, verify it, swap the alias.

One reindex at a time across every worker (the job store's lock; a second
start is a 409). The job runs as a task of the event loop and pushes the
heavy steps (catalog parsing, seqrec fusion, Qdrant upserts) to threads, so
requests keep being served; the encoder is reached through the dynamic
batcher in chunks, so live /embed and /recommend calls interleave with it.

Text vectors are reused for items whose ``item_text`` is unchanged (from the
served collection, else from the artifact set); only new or changed items are
encoded. Items of the trained artifact set keep their seqrec ID embedding.

The old collection stays until the alias swap succeeded; any failure before
it deletes the partial collection and leaves the alias (and serving) as they
were. After the swap the served snapshot is replaced, the other workers are
told, and only then is the old collection dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.artifacts import CatalogError, LoadedArtifacts, aligned_seqrec_vectors, read_catalog
from service.core.index import CatalogIndexError
from service.core.items import Item, item_text
from service.errors import ConfigurationError, JobNotFoundError, ReindexInProgressError
from service.stores.events import IndexChanged, IndexEvents
from service.stores.jobs import Job, JobStore, utc_now
from service.stores.qdrant import CatalogSnapshot, QdrantStore

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
EmbedFn = Callable[[Sequence[str]], Awaitable[np.ndarray]]

# Progress share of each stage (they add up to 1).
_P_READ, _P_ENCODE, _P_FUSE, _P_INDEX = 0.05, 0.45, 0.05, 0.40
_SAVE_EVERY_S = 0.25
_ADOPT_MIN_COSINE = 0.999


class ReindexCancelled(RuntimeError):
    """The service is shutting down; the job stops and removes what it built."""


@dataclass
class EncodedCatalog:
    items: list[Item]
    text_vectors: F32  # [N, T]
    seqrec_vectors: F32 | None  # [N, D]
    reused: int
    encoded: int


class ReindexManager:
    def __init__(
        self,
        *,
        store: QdrantStore,
        jobs: JobStore,
        events: IndexEvents,
        artifacts: LoadedArtifacts,
        embed: EmbedFn,
        encoder_name: str,
        default_catalog: Path | None = None,
        encode_chunk: int = 64,
        lock_ttl_s: int = 3600,
        worker_id: str | None = None,
        on_finished: Callable[[str], None] | None = None,
        prepare_snapshot: Callable[[CatalogSnapshot], dict[str, Any]] | None = None,
    ) -> None:
        # Derives per-snapshot tables (the semantic-ID catalog: new items get sids) before the
        # swap, so a failure leaves the old collection served and the new sids go live with it.
        self.prepare_snapshot = prepare_snapshot
        self.store = store
        self.jobs = jobs
        self.events = events
        self.artifacts = artifacts
        self.embed = embed
        self.encoder_name = encoder_name
        self.default_catalog = default_catalog or (artifacts.root / artifacts.manifest.items.catalog)
        self.encode_chunk = max(1, encode_chunk)
        self.lock_ttl_s = lock_ttl_s
        self.worker_id = worker_id or uuid.uuid4().hex[:12]
        self.on_finished = on_finished
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancel = threading.Event()

    # ================================================================ public
    async def start(self, catalog_path: Path | None = None) -> str:
        """Queue a reindex of ``catalog_path`` (default: the configured catalog); return the job id."""
        job_id = uuid.uuid4().hex
        if not await self.jobs.acquire_reindex_lock(job_id, self.lock_ttl_s):
            holder = await self.jobs.reindex_lock_holder()
            raise ReindexInProgressError("a reindex is already running; wait for it to finish", {"job_id": holder})
        path = Path(catalog_path) if catalog_path is not None else self.default_catalog
        job = Job(id=job_id, status="queued", stage="queued", started_at=utc_now(), stats={"catalog": str(path)})
        try:
            await self.jobs.save_job(job)
        except BaseException:
            await self.jobs.release_reindex_lock(job_id)
            raise
        task = asyncio.create_task(self._run_job(job, path), name=f"reindex-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))
        logger.info("reindex %s queued (catalog %s)", job_id, path)
        return job_id

    async def get(self, job_id: str) -> Job:
        job = await self.jobs.get_job(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        return job

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def close(self, timeout: float = 30) -> None:
        """Stop running jobs (they remove their partial collection) and wait for them."""
        self._cancel.set()
        tasks = list(self._tasks.values())
        if tasks:
            logger.info("stopping %d running reindex job(s)", len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                t.cancel()

    # ============================================================ bootstrap
    async def bootstrap(self, *, build_if_missing: bool = True, wait_s: float = 600) -> None:
        """At start: serve the alias target when it matches the artifact set, else build it once."""
        current = await self.store.alias_target()
        if current is not None:
            snapshot = await self._adopt(current)
            if snapshot is not None:
                self.store.set_snapshot(snapshot)
                return
            logger.warning(
                "collection %s behind alias %r was built for another artifact set; rebuilding it for %s",
                current,
                self.store.index.alias,
                self.artifacts.version,
            )
        elif not build_if_missing:
            raise ConfigurationError(
                f"Qdrant alias {self.store.index.alias!r} does not exist; run `make demo-build` "
                "(or `recsvc-train push`) or enable RECSVC_BOOTSTRAP_INDEX"
            )
        job_id = f"bootstrap-{uuid.uuid4().hex}"
        if not await self.jobs.acquire_reindex_lock(job_id, self.lock_ttl_s):
            await self._wait_for_peer(wait_s)
            return
        job = Job(id=job_id, status="running", stage="bootstrap", started_at=utc_now())
        try:
            path = self.default_catalog
            items = self.artifacts.ordered_items() if self._is_artifact_catalog(path) else None
            await self._run_pipeline(job, path, items)
        except Exception as exc:
            raise ConfigurationError(f"could not build the Qdrant index at start: {exc}") from exc
        finally:
            await self.jobs.release_reindex_lock(job_id)

    async def _wait_for_peer(self, wait_s: float) -> None:
        logger.info("another worker is building the index; waiting for it")
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            current = await self.store.alias_target()
            if current is not None and await self.jobs.reindex_lock_holder() is None:
                snapshot = await self._adopt(current)
                if snapshot is not None:
                    self.store.set_snapshot(snapshot)
                    return
        raise ConfigurationError(f"no usable index appeared within {wait_s:.0f}s while another worker built it")

    def _is_artifact_catalog(self, path: Path) -> bool:
        own = self.artifacts.root / self.artifacts.manifest.items.catalog
        try:
            return path.resolve() == own.resolve()
        except OSError:
            return False

    async def _adopt(self, collection: str) -> CatalogSnapshot | None:
        """A snapshot of ``collection`` when it was built from this artifact set's models, else None."""
        meta = await asyncio.to_thread(self.store.index.metadata, collection)
        version = meta.get("artifact_version")
        if version is not None and version != self.artifacts.version:
            return None
        try:
            snapshot = await self.store.load_snapshot(collection)
        except (CatalogIndexError, ValueError) as exc:
            logger.warning("cannot load %s: %s", collection, exc)
            return None
        if not self._compatible(snapshot, strict=version is None):
            return None
        return snapshot

    def _compatible(self, snapshot: CatalogSnapshot, *, strict: bool) -> bool:
        """Dims agree; ``strict`` (a collection without our metadata, e.g. from the offline build):
        every item it shares with the artifact set holds the artifact set's vectors."""
        art = self.artifacts
        if snapshot.text_vectors.shape[1] != art.text_vectors.shape[1]:
            return False
        if (art.seqrec_vectors is None) != (snapshot.seqrec_vectors is None):
            return False
        if (
            art.seqrec_vectors is not None
            and snapshot.seqrec_vectors is not None
            and snapshot.seqrec_vectors.shape[1] != art.seqrec_vectors.shape[1]
        ):
            return False
        if not strict:
            return True
        common = [(snapshot.row_of[i], art.row_of[i]) for i in snapshot.item_ids if i in art.row_of]
        if len(common) < min(len(snapshot), len(art.item_ids)):
            return False
        s_rows = np.asarray([c[0] for c in common], dtype=np.int64)
        a_rows = np.asarray([c[1] for c in common], dtype=np.int64)
        cos = (snapshot.text_vectors[s_rows] * art.text_vectors[a_rows]).sum(axis=1)  # [C] (unit rows)
        if cos.size and float(cos.min()) < _ADOPT_MIN_COSINE:
            return False
        if art.seqrec_vectors is not None and snapshot.seqrec_vectors is not None:
            a, s = art.seqrec_vectors[a_rows], snapshot.seqrec_vectors[s_rows]
            if not np.allclose(a, s, rtol=1e-3, atol=1e-4):
                return False
        return True

    # ============================================================ followers
    async def on_index_changed(self, event: IndexChanged) -> None:
        """Another worker swapped the alias: serve the new collection too."""
        if event.origin == self.worker_id:
            return
        if event.model_version != self.artifacts.version:
            logger.error(
                "alias moved to %s built with models %s, but this worker serves %s; not reloading",
                event.collection,
                event.model_version,
                self.artifacts.version,
            )
            return
        if self.store.has_snapshot and self.store.snapshot.collection == event.collection:
            return
        snapshot = await self.store.load_snapshot(event.collection)
        if not self._compatible(snapshot, strict=False):
            logger.error("collection %s does not match this worker's models; not reloading", event.collection)
            return
        self.store.set_snapshot(snapshot)

    # ================================================================= job
    async def _run_job(self, job: Job, path: Path) -> None:
        heartbeat = asyncio.create_task(self._renew_lock(job.id))
        try:
            job.status = "running"
            await self._run_pipeline(job, path, None)
        except asyncio.CancelledError:
            job.status, job.error, job.finished_at = "failed", "cancelled (service shutting down)", utc_now()
            with contextlib.suppress(Exception):
                await self.jobs.save_job(job)
            raise
        except Exception as exc:
            job.status = "failed"
            job.error = str(exc) or exc.__class__.__name__
            job.stage = f"failed during {job.stage}"
            job.finished_at = utc_now()
            if isinstance(exc, CatalogError | CatalogIndexError | ReindexCancelled | ValueError):
                logger.error("reindex %s failed: %s", job.id, exc)
            else:
                logger.exception("reindex %s failed", job.id)
            with contextlib.suppress(Exception):
                await self.jobs.save_job(job)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            with contextlib.suppress(Exception):
                await self.jobs.release_reindex_lock(job.id)
            if self.on_finished is not None:
                self.on_finished(job.status)

    async def _renew_lock(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.lock_ttl_s / 3))
            try:
                if not await self.jobs.renew_reindex_lock(job_id, self.lock_ttl_s):
                    logger.error("reindex %s lost its lock", job_id)
                    return
            except Exception as exc:
                logger.warning("could not renew the reindex lock: %s", exc)

    async def _run_pipeline(self, job: Job, path: Path, items: list[Item] | None) -> None:
        """read -> encode (reusing vectors) -> fuse -> build + verify -> swap -> publish -> drop old."""
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        last_save = [0.0]

        async def stage(name: str, progress: float) -> None:
            job.stage, job.progress = name, round(progress, 4)
            logger.info("reindex %s: %s", job.id, name)
            await self.jobs.save_job(replace(job, stats=dict(job.stats)))

        def progress_from_thread(p: float) -> None:
            if self._cancel.is_set():
                raise ReindexCancelled("service shutting down")
            job.progress = round(p, 4)
            now = time.monotonic()
            if now - last_save[0] >= _SAVE_EVERY_S:
                last_save[0] = now
                asyncio.run_coroutine_threadsafe(self.jobs.save_job(replace(job, stats=dict(job.stats))), loop)

        # 1. catalog
        await stage("reading catalog", 0.0)
        if items is None:
            items = await asyncio.to_thread(read_catalog, path)
        job.stats["items"] = len(items)

        # 2-3. text vectors (reuse or encode) and seqrec vectors
        await stage("encoding", _P_READ)
        encoded = await self._encode(items, lambda f: progress_from_thread(_P_READ + _P_ENCODE * f))
        job.stats.update({"reused": encoded.reused, "encoded": encoded.encoded})
        known = sum(1 for it in items if it.item_id in self.artifacts.row_of)
        job.stats.update({"new_items": len(items) - known})

        # 4. new collection, verified
        await stage("indexing", _P_READ + _P_ENCODE + _P_FUSE)
        metadata = {
            "artifact_version": self.artifacts.version,
            "encoder": self.encoder_name,
            "source": str(path),
            "job_id": job.id,
            "built_at": utc_now(),
        }
        base = _P_READ + _P_ENCODE + _P_FUSE
        new = await asyncio.to_thread(
            self.store.index.build,
            encoded.items,
            encoded.text_vectors,
            encoded.seqrec_vectors,
            metadata=metadata,
            on_batch=lambda done, total: progress_from_thread(base + _P_INDEX * done / total),
        )
        job.collection = new
        snapshot = await asyncio.to_thread(
            CatalogSnapshot.from_arrays, new, encoded.items, encoded.text_vectors, encoded.seqrec_vectors
        )

        if self.prepare_snapshot is not None:
            await stage("assigning semantic IDs", 0.95)
            try:
                job.stats.update(await asyncio.to_thread(self.prepare_snapshot, snapshot))
            except Exception:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.store.index.drop, new)
                raise

        # 5. swap (the point of no return), serve, tell the others, drop the old one
        await stage("swapping alias", 0.96)
        if self._cancel.is_set():
            await asyncio.to_thread(self.store.index.drop, new)
            raise ReindexCancelled("service shutting down")
        try:
            old = await asyncio.to_thread(self.store.index.swap_alias, new)
        except Exception:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.index.drop, new)
            raise
        self.store.set_snapshot(snapshot)
        job.stats["previous"] = old
        try:
            await self.events.publish(
                IndexChanged(
                    collection=new,
                    previous=old,
                    model_version=self.artifacts.version,
                    job_id=job.id,
                    origin=self.worker_id,
                )
            )
        except Exception as exc:  # the swap happened; other workers catch up on their next message
            logger.warning("could not publish the alias change: %s", exc)
        await stage("dropping previous collection", 0.98)
        for name in await asyncio.to_thread(self.store.index.collections):
            if name != new:
                try:
                    await asyncio.to_thread(self.store.index.drop, name)
                except Exception as exc:
                    logger.warning("could not drop %s: %s", name, exc)
        job.status = "succeeded"
        job.stage = "done"
        job.progress = 1.0
        job.finished_at = utc_now()
        job.stats["seconds"] = round(time.perf_counter() - t0, 2)
        await self.jobs.save_job(job)
        logger.info(
            "reindex %s: %s serving %d items (%d encoded, %d reused) in %.1fs",
            job.id,
            new,
            len(encoded.items),
            encoded.encoded,
            encoded.reused,
            time.perf_counter() - t0,
        )

    async def _encode(self, items: list[Item], progress: Callable[[float], None]) -> EncodedCatalog:
        texts = await asyncio.to_thread(lambda: [item_text(it) for it in items])
        dim = self.artifacts.text_vectors.shape[1]
        vectors = np.zeros((len(items), dim), dtype=np.float32)  # [N, T]
        todo: list[int] = []
        served = self.store.snapshot if self.store.has_snapshot else None
        art = self.artifacts
        for i, (it, text) in enumerate(zip(items, texts, strict=True)):
            r = served.row_of.get(it.item_id) if served is not None else None
            if served is not None and r is not None and item_text(served.items[r]) == text:
                vectors[i] = served.text_vectors[r]
                continue
            if (r := art.row_of.get(it.item_id)) is not None and item_text(art.items[it.item_id]) == text:
                vectors[i] = art.text_vectors[r]
                continue
            todo.append(i)
        logger.info(
            "reindex: %d items, %d reuse their vectors, %d to encode", len(items), len(items) - len(todo), len(todo)
        )
        for start in range(0, len(todo), self.encode_chunk):
            if self._cancel.is_set():
                raise ReindexCancelled("service shutting down")
            chunk = todo[start : start + self.encode_chunk]
            out = await self.embed([texts[i] for i in chunk])  # [C, T]
            if out.shape != (len(chunk), dim):
                raise ValueError(f"encoder returned shape {out.shape} for {len(chunk)} texts (expected dim {dim})")
            vectors[chunk] = out
            progress((start + len(chunk)) / len(todo))
        progress(1.0)
        seqrec_vectors = None
        if art.seqrec is not None:
            runtime = art.seqrec
            seqrec_vectors = await asyncio.to_thread(aligned_seqrec_vectors, runtime, art, items, vectors)  # [N, D]
        return EncodedCatalog(
            items=items,
            text_vectors=vectors,
            seqrec_vectors=seqrec_vectors,
            reused=len(items) - len(todo),
            encoded=len(todo),
        )
