"""Reindex: re-embed a catalog, build a new collection, verify it, swap the alias.

One reindex (or rollback) at a time across every worker: the job store's lock is
a short lease (``lease_s``) that the owning worker renews every lease/3. A job
whose owner died (kill -9, OOM, lost node) is found by its record saying
queued/running while it no longer holds the lease; it is marked failed
(``abandoned``) and its partial collection dropped, at start-up, on every reindex
request and whenever the job is read. A second start while the lease is held is
a 409. Catalogs come from the catalog directory only and are validated (path,
parse, shrink guard) before the 202. The job runs as a task of the event loop and pushes the
heavy steps (catalog parsing, seqrec fusion, Qdrant upserts) to threads, so
requests keep being served; the encoder is reached through the dynamic
batcher in chunks, so live /embed and /recommend calls interleave with it.

Text vectors are reused for items whose ``item_text`` is unchanged (from the
served collection, else from the artifact set); only new or changed items are
encoded. Items of the trained artifact set keep their seqrec ID embedding.

The old collection stays until the alias swap succeeded; any failure before
it deletes the partial collection and leaves the alias (and serving) as they
were. After the swap the served snapshot is replaced, the other workers are
told, and only then are collections dropped that are neither served nor among
the ``keep_collections`` most recently retired ones (rollback targets).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
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
from service.errors import (
    CatalogInvalidError,
    CatalogPathError,
    CatalogShrinkError,
    ConfigurationError,
    DependencyUnavailableError,
    JobFinishedError,
    JobNotFoundError,
    ReindexInProgressError,
    RollbackError,
)
from service.stores.events import IndexChanged, IndexEvents
from service.stores.jobs import Job, JobStatus, JobStore, utc_now
from service.stores.qdrant import CatalogSnapshot, QdrantStore

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
EmbedFn = Callable[[Sequence[str]], Awaitable[np.ndarray]]

# Progress share of each stage (they add up to 1).
_P_READ, _P_ENCODE, _P_FUSE, _P_INDEX = 0.05, 0.45, 0.05, 0.40
_SAVE_EVERY_S = 0.25
_ADOPT_MIN_COSINE = 0.999


class ReindexCancelled(RuntimeError):
    """The job was told to stop (admin cancel, lost lease, shutdown); it removes what it built."""


@dataclass
class EncodedCatalog:
    items: list[Item]
    text_vectors: F32  # [N, T]
    seqrec_vectors: F32 | None  # [N, D]
    reused: int
    encoded: int


@dataclass
class CatalogDiff:
    """What a catalog would change against the served snapshot (``dry_run``)."""

    items: int
    current_items: int
    added: int
    removed: int
    changed: int
    unchanged: int

    def to_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.__dict__.items()}


class _Control:
    """Stop signal of one running job (read from worker threads, so a threading.Event)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""
        self.status: JobStatus = "failed"

    def stop(self, reason: str, status: JobStatus = "failed") -> None:
        if not self.event.is_set():
            self.reason, self.status = reason, status
            self.event.set()

    def check(self) -> None:
        if self.event.is_set():
            raise ReindexCancelled(self.reason)


CANCELLED_BY_ADMIN = "cancelled by an admin request"
ABANDONED = "abandoned"


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
        catalog_dir: Path | None = None,
        encode_chunk: int = 64,
        encode_inflight: int = 4,
        lease_s: float = 15.0,
        min_share: float = 0.9,
        keep_collections: int = 1,
        worker_id: str | None = None,
        on_finished: Callable[[str], None] | None = None,
        prepare_snapshot: Callable[[CatalogSnapshot], dict[str, Any]] | None = None,
    ) -> None:
        # Derives per-snapshot tables (the semantic-ID catalog: new items get sids) before the
        # swap, so a failure leaves the old collection served and the new sids go live with it.
        # A rollback runs it for the collection it moves the alias back to.
        self.prepare_snapshot = prepare_snapshot
        # Items API (set by the app state): replays the item log into a built snapshot, and the
        # lock its writes hold (taken here around replay + alias swap).
        self.replay_items: Callable[[CatalogSnapshot], Awaitable[CatalogSnapshot]] | None = None
        self.items_lock: asyncio.Lock | None = None
        self.store = store
        self.jobs = jobs
        self.events = events
        self.artifacts = artifacts
        self.embed = embed
        self.encoder_name = encoder_name
        self.default_catalog = default_catalog or (artifacts.root / artifacts.manifest.items.catalog)
        self.catalog_dir = catalog_dir
        self.encode_chunk = max(1, encode_chunk)
        self.encode_inflight = max(1, encode_inflight)
        self.lease_s = float(lease_s)
        self.min_share = min_share
        self.keep_collections = max(0, keep_collections)
        self.worker_id = worker_id or uuid.uuid4().hex[:12]
        self.on_finished = on_finished
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._controls: dict[str, _Control] = {}
        self._stage_started: dict[str, tuple[str, float]] = {}  # job id -> (stage, perf_counter at its start)

    # ======================================================== catalogs
    def resolve_catalog(self, name: str) -> Path:
        """A request's ``catalog_path`` -> the file inside the catalog directory, or 422.

        Relative names are joined to the directory and may not contain ``..``; an absolute path is
        accepted only when it lies inside it. The result is resolved (symlinks followed) and must
        still lie inside the directory and be a regular file."""
        if self.catalog_dir is None:
            raise CatalogPathError("no catalog directory is configured (RECSVC_CATALOG_DIR)")
        base = self.catalog_dir.resolve()
        details: dict[str, Any] = {"catalog_path": name, "catalog_dir": str(base)}
        if not name or "\x00" in name:
            raise CatalogPathError("catalog_path must be a file name inside the catalog directory", details)
        given = Path(name)
        if not given.is_absolute() and ".." in given.parts:
            raise CatalogPathError(f"catalog_path {name!r} may not contain '..'", details)
        candidate = given if given.is_absolute() else base / given
        try:
            real = candidate.resolve(strict=True)
        except FileNotFoundError:
            inside = Path(os.path.normpath(candidate)).is_relative_to(base)
            msg = f"catalog {name!r} not found in {base}" if inside else f"catalog_path {name!r} is outside {base}"
            raise CatalogPathError(msg, details) from None
        except (OSError, RuntimeError) as exc:  # symlink loop, permission
            reason = exc.__class__.__name__
            raise CatalogPathError(f"catalog_path {name!r} cannot be resolved: {reason}", details) from None
        if not real.is_relative_to(base):
            raise CatalogPathError(
                f"catalog_path {name!r} is outside the catalog directory {base} (symlinks may not point out)",
                details,
            )
        if not real.is_file():
            raise CatalogPathError(f"catalog_path {name!r} is not a regular file", details)
        return real

    async def load_catalog(self, name: str | None) -> tuple[str, list[Item]]:
        """(label, items) of the requested catalog, parsed and validated; 4xx on any problem."""
        if name is None:
            path = self.default_catalog
            label = str(path)  # operator configuration (RECSVC_CATALOG_PATH), not request input
            if self._is_artifact_catalog(path):
                return f"artifact set {self.artifacts.version}", self.artifacts.ordered_items()
        else:
            path, label = self.resolve_catalog(name), name
        try:
            items = await asyncio.to_thread(read_catalog, path)
        except CatalogError as exc:
            msg = str(exc).replace(str(path), label)
            raise CatalogInvalidError(msg, {"catalog_path": label}) from exc
        return label, items

    def diff(self, items: Sequence[Item]) -> CatalogDiff:
        served = self.store.snapshot if self.store.has_snapshot else None
        if served is None:
            return CatalogDiff(len(items), 0, len(items), 0, 0, 0)
        new_ids = {it.item_id for it in items}
        added = changed = unchanged = 0
        for it in items:
            r = served.row_of.get(it.item_id)
            if r is None:
                added += 1
            elif served.items[r].payload() != it.payload():
                changed += 1
            else:
                unchanged += 1
        removed = sum(1 for iid in served.item_ids if iid not in new_ids)
        return CatalogDiff(len(items), len(served), added, removed, changed, unchanged)

    def check_shrink(self, diff: CatalogDiff, force: bool) -> None:
        if force or diff.current_items == 0 or self.min_share <= 0:
            return
        if diff.items < self.min_share * diff.current_items:
            raise CatalogShrinkError(
                f"the catalog holds {diff.items} items, fewer than {self.min_share:.0%} of the "
                f'{diff.current_items} served; check the file, or send "force": true to index it anyway',
                {**diff.to_dict(), "min_share": self.min_share},
            )

    # ================================================================ public
    async def dry_run(self, name: str | None = None, *, force: bool = False) -> dict[str, Any]:
        """What a reindex of the catalog would change; touches nothing."""
        label, items = await self.load_catalog(name)
        diff = self.diff(items)
        refused = None
        try:
            self.check_shrink(diff, force)
        except CatalogShrinkError as exc:
            refused = exc.message
        return {"dry_run": True, "catalog": label, **diff.to_dict(), "shrink_refused": refused}

    async def start(self, catalog_path: str | None = None, *, force: bool = False) -> str:
        """Validate the catalog, then queue its reindex; return the job id.

        Every mistake in the request (path, parse error, shrink) is raised here, before the 202."""
        label, items = await self.load_catalog(catalog_path)
        self.check_shrink(self.diff(items), force)
        job_id = uuid.uuid4().hex
        await self.reap()
        if not await self.jobs.acquire_reindex_lock(job_id, self.lease_s):
            holder = await self.jobs.reindex_lock_holder()
            raise ReindexInProgressError(
                "a reindex or rollback is already running; wait for it to finish (or cancel it)", {"job_id": holder}
            )
        job = Job(
            id=job_id,
            status="queued",
            stage="queued",
            started_at=utc_now(),
            stats={"catalog": label},
            owner=self.worker_id,
        )
        try:
            await self.jobs.save_job(job)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.jobs.release_reindex_lock(job_id)
            raise
        control = _Control()
        self._controls[job_id] = control
        task = asyncio.create_task(self._run_job(job, items, control), name=f"reindex-{job_id}")
        self._tasks[job_id] = task

        def _done(_: object) -> None:
            self._tasks.pop(job_id, None)
            self._controls.pop(job_id, None)

        task.add_done_callback(_done)
        logger.info("reindex %s queued (catalog %s, %d items)", job_id, label, len(items))
        return job_id

    async def get(self, job_id: str) -> Job:
        job = await self.jobs.get_job(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        if job.active and job_id not in self._tasks:
            job = await self._abandon_if_dead(job_id) or job
        return job

    async def cancel(self, job_id: str, wait_s: float = 10.0) -> Job:
        """Stop a queued/running job (on whichever worker runs it) and wait up to ``wait_s`` for it."""
        job = await self.get(job_id)
        if not job.active:
            raise JobFinishedError(
                f"job {job_id} already ended ({job.status})", {"job_id": job_id, "status": job.status}
            )
        control = self._controls.get(job_id)
        if control is not None:
            control.stop(CANCELLED_BY_ADMIN, "cancelled")
        else:
            await self.jobs.request_cancel(job_id)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            job = await self.get(job_id)
            if not job.active:
                break
        return job

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def close(self, timeout: float = 30) -> None:
        """Stop running jobs (they remove their partial collection) and wait for them."""
        for control in self._controls.values():
            control.stop("cancelled (service shutting down)")
        tasks = list(self._tasks.values())
        if tasks:
            logger.info("stopping %d running reindex job(s)", len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                t.cancel()

    # ================================================ dead owners, leftovers
    async def _abandon_if_dead(self, job_id: str) -> Job | None:
        """Mark the job failed (``abandoned``) when its lease is no longer held by it; return it."""
        holder = await self.jobs.reindex_lock_holder()
        job = await self.jobs.get_job(job_id)  # read after the holder: a finished job saved its end first
        if job is None or not job.active or holder == job_id or job_id in self._tasks:
            return job
        job.status = "failed"
        job.stage = ABANDONED
        job.error = (
            f"abandoned: worker {job.owner or '?'} stopped renewing its lease (crashed or killed) "
            f"while the job was {job.progress:.0%} done; its partial collection was removed"
        )
        job.finished_at = utc_now()
        await self.jobs.save_job(job)
        logger.warning("reindex %s %s", job_id, job.error)
        await self._sweep(holder)
        if self.on_finished is not None:
            self.on_finished(job.status)
        return job

    async def reap(self) -> None:
        """Abandon jobs of dead owners and drop collections nobody builds or keeps."""
        for job_id in await self.jobs.active_jobs():
            if job_id not in self._tasks:
                await self._abandon_if_dead(job_id)
        await self._sweep(await self.jobs.reindex_lock_holder())

    async def _sweep(self, holder: str | None, *, after_swap: bool = False, holder_known: bool = True) -> None:
        """Drop what neither serves, is kept for rollback, nor is being built.

        kept: the ``keep_collections`` most recently retired collections; being built: the
        collection whose ``job_id`` holds the lease (or runs here). A collection without a
        ``job_id`` (pushed by the offline build) is left alone except right after a swap."""
        index = self.store.index
        current = await self.store.alias_target()
        kept = set((await asyncio.to_thread(index.retired))[: self.keep_collections])
        local = set(self._tasks)
        for name, meta in await asyncio.to_thread(index.family):
            if name == current or name in kept:
                continue
            job_id = meta.get("job_id")
            if meta.get("retired_at"):
                reason = "beyond the kept previous collections"
            elif after_swap:
                reason = "not served"
            elif job_id and holder_known and job_id != holder and job_id not in local:
                reason = f"left by job {job_id}, which is not running"
            else:
                continue
            try:
                await asyncio.to_thread(index.drop, name)
                logger.info("dropped collection %s (%s)", name, reason)
            except Exception as exc:
                logger.warning("could not drop %s: %s", name, exc)

    # ============================================================ bootstrap
    async def bootstrap(self, *, build_if_missing: bool = True, wait_s: float = 600) -> None:
        """At start: serve the alias target when it matches the artifact set, else build it once;
        then clean up after jobs that died with a previous process."""
        await self._bootstrap(build_if_missing=build_if_missing, wait_s=wait_s)
        try:
            await self.reap()
        except DependencyUnavailableError:
            logger.warning("Redis is down: jobs of dead workers are cleaned up at the next reindex request")
            await self._sweep(None, holder_known=False)

    async def _bootstrap(self, *, build_if_missing: bool, wait_s: float) -> None:
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
        locked = True
        try:
            if not await self.jobs.acquire_reindex_lock(job_id, self.lease_s):
                await self._wait_for_peer(wait_s)
                return
        except DependencyUnavailableError:
            locked = False
            logger.warning("Redis is down: building the first collection without the reindex lease")
        job = Job(id=job_id, status="running", stage="bootstrap", started_at=utc_now(), owner=self.worker_id)
        control = _Control()
        keeper = asyncio.create_task(self._keep_lease(job_id, control)) if locked else None
        try:
            path = self.default_catalog
            items = self.artifacts.ordered_items() if self._is_artifact_catalog(path) else None
            if items is None:
                items = await asyncio.to_thread(read_catalog, path)
            await self._run_pipeline(job, items, control)
        except Exception as exc:
            raise ConfigurationError(f"could not build the Qdrant index at start: {exc}") from exc
        finally:
            if keeper is not None:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
            if locked:
                with contextlib.suppress(Exception):
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
        """Another worker swapped the alias (reindex or rollback): serve the new collection too."""
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
        await asyncio.to_thread(self._prepare, snapshot)  # sid tables follow the alias
        self.store.set_snapshot(snapshot)

    async def resync(self) -> None:
        """After a gap in the alias messages (Redis was down): serve the alias target if it moved."""
        current = await self.store.alias_target()
        if current is None or (self.store.has_snapshot and self.store.snapshot.collection == current):
            return
        logger.info("alias points at %s while this worker serves another collection; reloading", current)
        snapshot = await self._adopt(current)
        if snapshot is not None:
            await asyncio.to_thread(self._prepare, snapshot)
            self.store.set_snapshot(snapshot)

    def _prepare(self, snapshot: CatalogSnapshot) -> dict[str, Any]:
        return self.prepare_snapshot(snapshot) if self.prepare_snapshot is not None else {}

    # ============================================================ rollback
    def collections_info(self) -> dict[str, Any]:
        """The alias family: which collection serves, which are kept for rollback (newest first)."""
        index = self.store.index
        current = index.current_collection()
        retired = index.retired()
        kept = retired[: self.keep_collections]
        rows = []
        for name, meta in index.family():
            role = "serving" if name == current else "kept" if name in kept else "other"
            rows.append(
                {
                    "name": name,
                    "role": role,
                    "items": meta.get("count"),
                    "artifact_version": meta.get("artifact_version"),
                    "job_id": meta.get("job_id"),
                    "built_at": meta.get("built_at"),
                }
            )
        return {"alias": index.alias, "current": current, "kept": kept, "collections": rows}

    async def rollback(self, collection: str | None = None) -> dict[str, Any]:
        """Move the alias back to a kept previous collection (default: the most recently retired),
        atomically; this worker serves it at once and the others follow the IndexChanged message."""
        lock_id = f"rollback-{uuid.uuid4().hex}"
        await self.reap()
        if not await self.jobs.acquire_reindex_lock(lock_id, self.lease_s):
            holder = await self.jobs.reindex_lock_holder()
            raise ReindexInProgressError(
                "a reindex or rollback is running; wait for it or cancel it", {"job_id": holder}
            )
        control = _Control()
        keeper = asyncio.create_task(self._keep_lease(lock_id, control))
        try:
            index = self.store.index
            current = await self.store.alias_target()
            kept = (await asyncio.to_thread(index.retired))[: self.keep_collections]
            if collection is None:
                if not kept:
                    raise RollbackError(
                        "no previous collection is kept to roll back to (RECSVC_REINDEX_KEEP_COLLECTIONS)",
                        {"current": current, "kept": kept},
                    )
                target = kept[0]
            elif collection == current:
                raise RollbackError(f"{collection} is already served", {"current": current, "kept": kept})
            elif collection not in kept:
                raise RollbackError(
                    f"{collection} is not a kept previous collection", {"current": current, "kept": kept}
                )
            else:
                target = collection
            snapshot = await self._adopt(target)
            if snapshot is None:
                raise RollbackError(
                    f"{target} was built for other models than the served artifact set {self.artifacts.version}",
                    {"current": current, "kept": kept},
                )
            stats = await asyncio.to_thread(self._prepare, snapshot)  # sid tables follow the rollback
            control.check()
            previous = await asyncio.to_thread(index.swap_alias_to, target, now=time.time())
            self.store.set_snapshot(snapshot)
            try:
                await self.events.publish(
                    IndexChanged(
                        collection=target,
                        previous=previous,
                        model_version=self.artifacts.version,
                        job_id=lock_id,
                        origin=self.worker_id,
                    )
                )
            except Exception as exc:  # other workers resync when their subscription comes back
                logger.warning("could not publish the rollback: %s", exc)
            await self._sweep(lock_id, after_swap=True)
            logger.warning("rolled back: alias %s %s -> %s", index.alias, previous, target)
            return {
                "collection": target,
                "previous": previous,
                "items": len(snapshot),
                "kept": (await asyncio.to_thread(index.retired))[: self.keep_collections],
                "stats": stats,
            }
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            with contextlib.suppress(Exception):
                await self.jobs.release_reindex_lock(lock_id)

    # ================================================================= job
    async def _run_job(self, job: Job, items: list[Item], control: _Control) -> None:
        keeper = asyncio.create_task(self._keep_lease(job.id, control))
        try:
            job.status = "running"
            await self._run_pipeline(job, items, control)
        except asyncio.CancelledError:
            job.status, job.error, job.finished_at = "failed", "cancelled (service shutting down)", utc_now()
            with contextlib.suppress(Exception):
                await self.jobs.save_job(job)
            raise
        except Exception as exc:
            stopped = control.event.is_set()
            job.status = control.status if stopped else "failed"
            job.error = control.reason if stopped else (str(exc) or exc.__class__.__name__)
            job.stage = f"{'cancelled' if job.status == 'cancelled' else 'failed'} during {job.stage}"
            job.finished_at = utc_now()
            if stopped or isinstance(exc, CatalogError | CatalogIndexError | ReindexCancelled | ValueError):
                logger.error("reindex %s %s: %s", job.id, job.status, job.error)
            else:
                logger.exception("reindex %s failed", job.id)
            with contextlib.suppress(Exception):
                await self.jobs.save_job(job)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            with contextlib.suppress(Exception):
                await self.jobs.release_reindex_lock(job.id)
            if self.on_finished is not None:
                self.on_finished(job.status)

    async def _keep_lease(self, job_id: str, control: _Control) -> None:
        """Renew the lease every lease/3 and poll for a cancel request (other workers) every tick.
        The fence: when the lease is lost (renewal refused, or Redis unreachable for a whole
        lease) the job stops before the swap, since another job may hold the lease by now."""
        tick = min(1.0, self.lease_s / 3)
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            try:
                if await self.jobs.cancel_requested(job_id):
                    control.stop(CANCELLED_BY_ADMIN, "cancelled")
                if now - renewed >= self.lease_s / 3:
                    if not await self.jobs.renew_reindex_lock(job_id, self.lease_s):
                        logger.error("reindex %s lost its lease", job_id)
                        control.stop("stopped: the job lost its lease (another worker may have taken over)")
                        return
                    renewed = now
            except Exception as exc:
                logger.warning("could not renew the reindex lease: %s", exc)
                if now - renewed >= self.lease_s:
                    control.stop("stopped: the lease could not be renewed for a whole lease (Redis unreachable)")
                    return

    async def _fence(self, job: Job, control: _Control) -> None:
        """Right before the point of no return: still the lease holder and not told to stop."""
        control.check()
        if job.id.startswith("bootstrap-"):
            return  # bootstrap may run without a lease (Redis down at start)
        try:
            held = await self.jobs.renew_reindex_lock(job.id, self.lease_s)
        except DependencyUnavailableError as exc:
            control.stop("stopped before the swap: the lease could not be confirmed (Redis unreachable)")
            raise ReindexCancelled(control.reason) from exc
        if not held:
            control.stop("stopped before the swap: the job lost its lease")
        control.check()

    async def _run_pipeline(self, job: Job, items: list[Item], control: _Control) -> None:
        """encode (reusing vectors) -> fuse -> build + verify -> [pre-swap steps] -> swap -> publish -> prune.

        Everything before the swap only adds a new collection, which any failure or stop drops;
        a step that must see the final item set before it goes live (e.g. replaying an item log
        into the new collection) belongs in :meth:`_before_swap`."""
        t0 = time.perf_counter()
        try:
            await self._pipeline(job, items, control, t0)
        finally:
            self._stage_started.pop(job.id, None)

    async def _pipeline(self, job: Job, items: list[Item], control: _Control, t0: float) -> None:
        await self._stage(job, "reading catalog", 0.0)
        job.stats["items"] = len(items)
        new, snapshot, encoded = await self._build(job, items, control)
        # API item writes wait while the item log is replayed into the new collection and the alias
        # moves, so none acknowledged in between is missing from what goes live.
        gate = self.items_lock if self.items_lock is not None else contextlib.nullcontext()
        async with gate:
            try:
                snapshot = await self._before_swap(job, snapshot, control)
                await self._stage(job, "swapping alias", 0.96)
                await self._fence(job, control)
                old = await asyncio.to_thread(self.store.index.swap_alias_to, new, now=time.time())
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.store.index.drop, new)
                raise
            # the point of no return: serve, tell the others, drop what is neither served nor kept
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
        except Exception as exc:  # the swap happened; other workers resync when they hear from Redis again
            logger.warning("could not publish the alias change: %s", exc)
        await self._stage(job, "dropping old collections", 0.98)
        try:
            await self._sweep(job.id, after_swap=True)
        except Exception as exc:
            logger.warning("could not drop old collections: %s", exc)
        self._end_stage(job)
        job.status = "succeeded"
        job.stage = "done"
        job.progress = 1.0
        job.finished_at = utc_now()
        job.stats["seconds"] = round(time.perf_counter() - t0, 2)
        job.stats["kept"] = (await asyncio.to_thread(self.store.index.retired))[: self.keep_collections]
        await self._save_progress(job)
        logger.info(
            "reindex %s: %s serving %d items (%d encoded, %d reused) in %.1fs",
            job.id,
            new,
            len(encoded.items),
            encoded.encoded,
            encoded.reused,
            time.perf_counter() - t0,
        )

    def _end_stage(self, job: Job) -> None:
        """Add the seconds of the stage that is ending to ``stats["stage_s"]`` (where a job's time goes)."""
        started = self._stage_started.pop(job.id, None)
        if started is not None:
            timings = job.stats.setdefault("stage_s", {})
            timings[started[0]] = round(timings.get(started[0], 0.0) + time.perf_counter() - started[1], 3)

    async def _stage(self, job: Job, name: str, progress: float) -> None:
        self._end_stage(job)
        self._stage_started[job.id] = (name, time.perf_counter())
        job.stage, job.progress = name, round(progress, 4)
        logger.info("reindex %s: %s", job.id, name)
        await self._save_progress(job)

    async def _save_progress(self, job: Job) -> None:
        """Progress is best effort: a Redis blip does not fail the job (the lease decides that)."""
        try:
            await self.jobs.save_job(replace(job, stats=dict(job.stats)))
        except DependencyUnavailableError as exc:
            logger.warning("reindex %s: progress not saved (%s)", job.id, exc.message)

    async def _build(
        self, job: Job, items: list[Item], control: _Control
    ) -> tuple[str, CatalogSnapshot, EncodedCatalog]:
        """The new collection, complete and verified (the alias untouched)."""
        loop = asyncio.get_running_loop()
        last_save = [0.0]

        def progress_from_thread(p: float) -> None:
            control.check()
            job.progress = round(p, 4)
            now = time.monotonic()
            if now - last_save[0] >= _SAVE_EVERY_S:
                last_save[0] = now
                asyncio.run_coroutine_threadsafe(self._save_progress(job), loop)

        # text vectors (reuse or encode) and seqrec vectors
        await self._stage(job, "encoding", _P_READ)
        encoded = await self._encode(items, lambda f: progress_from_thread(_P_READ + _P_ENCODE * f), control)
        job.stats.update({"reused": encoded.reused, "encoded": encoded.encoded})
        known = sum(1 for it in items if it.item_id in self.artifacts.row_of)
        job.stats.update({"new_items": len(items) - known})

        # new collection, verified (its metadata names the job: a leftover of a dead job is found by it)
        await self._stage(job, "indexing", _P_READ + _P_ENCODE + _P_FUSE)
        metadata = {
            "artifact_version": self.artifacts.version,
            "encoder": self.encoder_name,
            "source": str(job.stats.get("catalog", "")),
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
        try:
            control.check()
            snapshot = await asyncio.to_thread(
                CatalogSnapshot.from_arrays, new, encoded.items, encoded.text_vectors, encoded.seqrec_vectors
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.index.drop, new)
            raise
        return new, snapshot, encoded

    async def _before_swap(self, job: Job, snapshot: CatalogSnapshot, control: _Control) -> CatalogSnapshot:
        """Steps on the built collection before it goes live; a failure drops it. Returns the
        snapshot to serve (the item log replayed on top of the catalog)."""
        if self.replay_items is not None:
            await self._stage(job, "replaying the item log", 0.94)
            before = len(snapshot)
            snapshot = await self.replay_items(snapshot)
            job.stats["item_log_replayed"] = True
            job.stats["items_after_log"] = len(snapshot)
            job.stats["items_log_delta"] = len(snapshot) - before
        if self.prepare_snapshot is not None:
            await self._stage(job, "assigning semantic IDs", 0.95)
            job.stats.update(await asyncio.to_thread(self._prepare, snapshot))
        control.check()
        return snapshot

    async def _encode_chunks(
        self,
        texts: Sequence[str],
        todo: Sequence[int],
        vectors: F32,
        progress: Callable[[float], None],
        control: _Control,
    ) -> None:
        """Encode ``texts[i]`` for every ``i`` in ``todo`` into ``vectors[i]``, ``encode_inflight``
        chunks queued at a time: with one, the encoder's stages (tokenize, run, pool) could never
        overlap across chunks and each chunk waited for the event loop to queue the next one. More
        in flight keep the bulk lane fed; interactive work still goes ahead of them."""
        dim = vectors.shape[1]
        chunks = [list(todo[s : s + self.encode_chunk]) for s in range(0, len(todo), self.encode_chunk)]
        done = [0]

        async def one(chunk: list[int]) -> None:
            control.check()
            out = await self.embed([texts[i] for i in chunk])  # [C, T]
            if out.shape != (len(chunk), dim):
                raise ValueError(f"encoder returned shape {out.shape} for {len(chunk)} texts (expected dim {dim})")
            vectors[chunk] = out
            done[0] += len(chunk)
            progress(done[0] / len(todo))

        pending: set[asyncio.Task[None]] = set()
        try:
            for chunk in chunks:
                if len(pending) >= self.encode_inflight:
                    finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for t in finished:
                        t.result()  # the first failure (or stop) ends the loop
                pending.add(asyncio.create_task(one(chunk)))
            while pending:
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in finished:
                    t.result()
        finally:
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def _encode(self, items: list[Item], progress: Callable[[float], None], control: _Control) -> EncodedCatalog:
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
        await self._encode_chunks(texts, todo, vectors, progress, control)
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
