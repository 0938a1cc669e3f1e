"""The service's view of the catalog index: the Qdrant client and the served snapshot.

A :class:`CatalogSnapshot` is the set of items the service serves right now:
ids, payloads (exactly the Qdrant payloads), text and seqrec vectors, all from
one collection. Histories are resolved against it, and it is swapped in one
assignment when a reindex (here or in another worker) moves the alias, or when the items API
(here, or another worker's change arriving as a message) changes items of the collection.

A snapshot's :attr:`CatalogSnapshot.version` names its collection *and* its content: it changes
with every applied item change, and two workers serving the same items (whatever the order their
changes came in) have the same version, so caches shared between workers can be keyed by it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from qdrant_client import models

from service.config import QdrantSettings
from service.core.index import (
    ROW_KEY,
    VECTOR_SEQREC,
    VECTOR_TEXT,
    CatalogIndex,
    ExactSearcher,
    IndexedPoints,
    RowStore,
    SearchFilter,
    SearchHit,
    open_client,
    point_id,
)
from service.core.items import Item, item_from_dict

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


def item_digest(item: Item) -> int:
    """128-bit digest of one item's content (every field of its payload, not its row)."""
    blob = json.dumps(item.payload(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(blob, digest_size=16).digest(), "big")


def content_digest(items: Sequence[Item]) -> int:
    """Order-free digest of a set of items (ids are unique in a snapshot): the XOR of their
    :func:`item_digest`, so one change updates it in O(1) (XOR the old item out, the new one in)."""
    out = 0
    for it in items:
        out ^= item_digest(it)
    return out


@dataclass
class CatalogSnapshot:
    collection: str
    items: list[Item]
    payloads: list[dict[str, Any]]
    text_vectors: F32  # [N, T]
    seqrec_vectors: F32 | None  # [N, D]
    # content_digest(items); computed when not given (apply_changes hands in the updated one)
    digest: int | None = None
    # apply_changes: the id -> row map, searcher and row buffers it derived from the previous snapshot
    derived: SnapshotParts | None = field(default=None, repr=False, compare=False)
    row_of: dict[str, int] = field(init=False)
    searcher: ExactSearcher = field(init=False)
    # growable buffers behind text_vectors / seqrec_vectors (RowStore: appends without copying the catalog)
    text_store: RowStore = field(init=False, repr=False, compare=False)
    seqrec_store: RowStore | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.items)
        if len(self.payloads) != n or self.text_vectors.shape[0] != n:
            raise ValueError("snapshot arrays disagree in length")
        if self.seqrec_vectors is not None and self.seqrec_vectors.shape[0] != n:
            raise ValueError("snapshot seqrec vectors disagree in length")
        if self.derived is not None:
            parts, self.derived = self.derived, None  # not kept: it would chain every older snapshot
            self.row_of, self.searcher = parts.row_of, parts.searcher
            self.text_store, self.seqrec_store = parts.text_store, parts.seqrec_store
            if self.digest is None:
                self.digest = content_digest(self.items)
            return
        self.text_store = RowStore.wrap(self.text_vectors)
        self.seqrec_store = None if self.seqrec_vectors is None else RowStore.wrap(self.seqrec_vectors)
        self.row_of = {it.item_id: i for i, it in enumerate(self.items)}
        vectors = {VECTOR_TEXT: self.text_vectors}
        if self.seqrec_vectors is not None:
            vectors[VECTOR_SEQREC] = self.seqrec_vectors
        self.searcher = ExactSearcher([it.item_id for it in self.items], self.payloads, vectors)
        if self.digest is None:
            self.digest = content_digest(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def version(self) -> str:
        """``{collection}@{content digest}``: what cached answers computed on this snapshot are keyed by."""
        return f"{self.collection}@{self.digest:032x}"

    @property
    def item_ids(self) -> list[str]:
        return [it.item_id for it in self.items]

    @classmethod
    def from_arrays(
        cls,
        collection: str,
        items: Sequence[Item],
        text_vectors: np.ndarray,
        seqrec_vectors: np.ndarray | None,
    ) -> CatalogSnapshot:
        """Snapshot of what :meth:`CatalogIndex.build` wrote for these arrays (same payloads)."""
        payloads = []
        for i, it in enumerate(items):
            p = it.payload()
            p[ROW_KEY] = i
            payloads.append(p)
        return cls(
            collection=collection,
            items=list(items),
            payloads=payloads,
            text_vectors=np.ascontiguousarray(text_vectors, dtype=np.float32),
            seqrec_vectors=None if seqrec_vectors is None else np.ascontiguousarray(seqrec_vectors, dtype=np.float32),
        )

    @classmethod
    def from_points(cls, points: IndexedPoints) -> CatalogSnapshot:
        items = [item_from_dict(p, allow_empty_title=True) for p in points.payloads]
        return cls(
            collection=points.collection,
            items=items,
            payloads=points.payloads,
            text_vectors=points.text_vectors,
            seqrec_vectors=points.seqrec_vectors,
        )


@dataclass(frozen=True)
class ItemChange:
    """One upserted item with its vectors (text [T], seqrec [D] or None)."""

    item: Item
    text_vector: F32
    seqrec_vector: F32 | None


@dataclass(frozen=True)
class SnapshotParts:
    """What :func:`apply_changes` derives for the next snapshot instead of rebuilding it from all rows."""

    row_of: dict[str, int]
    searcher: ExactSearcher
    text_store: RowStore
    seqrec_store: RowStore | None


class _Vectors(NamedTuple):
    text: F32  # [n, T]
    text_store: RowStore
    seqrec: F32 | None  # [n, D]
    seqrec_store: RowStore | None


class _RowEdit:
    """The list/dict side of :func:`apply_changes`: items, payloads and id -> row of the next snapshot,
    the vectors written into each changed row, and the content digest kept up to date."""

    def __init__(self, snapshot: CatalogSnapshot) -> None:
        assert snapshot.digest is not None
        self.snapshot = snapshot
        self.items = list(snapshot.items)
        self.payloads = list(snapshot.payloads)
        self.row_of = dict(snapshot.row_of)
        self.digest = snapshot.digest
        # row -> (text, seqrec) written into it; other rows keep the old arrays' values
        self.written: dict[int, tuple[F32, F32 | None]] = {}
        self.touched: set[int] = set()
        self.removed: list[str] = []

    def row_vectors(self, r: int) -> tuple[F32, F32 | None]:
        got = self.written.get(r)
        if got is not None:
            return got
        old_seq = self.snapshot.seqrec_vectors
        return self.snapshot.text_vectors[r], None if old_seq is None else old_seq[r]

    def upsert(self, u: ItemChange) -> None:
        r = self.row_of.get(u.item.item_id)
        if r is None:
            r = len(self.items)
            self.items.append(u.item)
            self.payloads.append({})
            self.row_of[u.item.item_id] = r
            seq_r = u.seqrec_vector
        else:
            self.digest ^= item_digest(self.items[r])
            seq_r = u.seqrec_vector if u.seqrec_vector is not None else self.row_vectors(r)[1]
        self.digest ^= item_digest(u.item)
        self.items[r] = u.item
        self.written[r] = (u.text_vector, seq_r)
        self.touched.add(r)

    def delete(self, item_id: str) -> None:
        """Swap-remove: the last row moves into the hole."""
        items, payloads = self.items, self.payloads
        r = self.row_of.pop(item_id, None)
        if r is None:
            return
        self.removed.append(item_id)
        self.digest ^= item_digest(items[r])
        last = len(items) - 1
        if r != last:
            items[r] = items[last]
            payloads[r] = payloads[last]
            self.written[r] = self.row_vectors(last)
            self.row_of[items[r].item_id] = r
            self.touched.add(r)
        items.pop()
        payloads.pop()
        self.written.pop(last, None)
        self.touched.discard(last)

    def patched_vectors(self, n_old: int) -> tuple[np.ndarray, _Vectors]:
        """(rows written [K], the next snapshot's vectors) patched in O(changed rows)."""
        snapshot, written, n = self.snapshot, self.written, len(self.items)
        rows = np.asarray(sorted(written), dtype=np.int64)  # [K]: every touched row, the appended ones included
        t = snapshot.text_vectors.shape[1]
        text_vals = (
            np.stack([written[r][0] for r in rows.tolist()]).astype(np.float32) if rows.size else np.zeros((0, t))
        )
        text_store, text = snapshot.text_store.patched(n_old, n, rows, text_vals)
        old_seq = snapshot.seqrec_vectors
        if old_seq is None:
            return rows, _Vectors(text, text_store, None, None)
        assert snapshot.seqrec_store is not None
        seq_vals = [written[r][1] for r in rows.tolist()]
        seq_arr = np.stack(seq_vals).astype(np.float32) if rows.size else np.zeros((0, old_seq.shape[1]))  # type: ignore[arg-type]
        seq_store, seq = snapshot.seqrec_store.patched(n_old, n, rows, seq_arr)
        return rows, _Vectors(text, text_store, seq, seq_store)


def apply_changes(
    snapshot: CatalogSnapshot, upserts: Sequence[ItemChange], deletes: Sequence[str]
) -> tuple[CatalogSnapshot, list[int], list[str]]:
    """A new snapshot with ``upserts`` (in place, or appended) and ``deletes`` (swap-remove: the
    last row moves into the hole, so rows stay 0..N-1 as :meth:`CatalogIndex.load_points` needs).

    Returns (new snapshot, rows whose point must be (re)written, ids whose point must be deleted).
    The old snapshot is not modified (requests holding it keep a consistent view).

    Cost: O(N) only in list/dict pointer copies (items, payloads, ids, id -> row); the vector arrays, the
    exact searcher's unit text rows, prices and category index are patched in O(changed rows)
    (:class:`RowStore`: appended rows go past the rows older snapshots see, without a copy while the
    buffer has room; a change to an existing row, or a delete, copies the arrays once).
    """
    n_old = len(snapshot.items)
    if snapshot.seqrec_vectors is not None:
        for u in upserts:
            if u.item.item_id not in snapshot.row_of and u.seqrec_vector is None:
                raise ValueError("a new item lacks its seqrec vector")
    edit = _RowEdit(snapshot)
    for u in upserts:
        edit.upsert(u)
    for item_id in deletes:
        edit.delete(item_id)
    items, payloads, row_of = edit.items, edit.payloads, edit.row_of
    n = len(items)
    if n == 0:
        raise ValueError("the change would leave the catalog empty")
    for r in edit.touched:
        p = items[r].payload()
        p[ROW_KEY] = r
        payloads[r] = p
    rows, vec = edit.patched_vectors(n_old)
    vectors = {VECTOR_TEXT: vec.text}
    if vec.seqrec is not None:
        vectors[VECTOR_SEQREC] = vec.seqrec
    ids = snapshot.searcher.item_ids[:n] + [""] * (n - n_old)  # a list copy: no per-item Python work
    for r in rows.tolist():
        ids[r] = items[r].item_id
    searcher = snapshot.searcher.patched(ids, payloads, row_of, rows.tolist(), vectors)
    new = CatalogSnapshot(
        collection=snapshot.collection,
        items=items,
        payloads=payloads,
        text_vectors=vec.text,
        seqrec_vectors=vec.seqrec,
        digest=edit.digest,
        derived=SnapshotParts(row_of, searcher, vec.text_store, vec.seqrec_store),
    )
    return new, sorted(edit.touched), edit.removed


class QdrantStore:
    """Qdrant client + alias family + the served snapshot."""

    def __init__(self, settings: QdrantSettings) -> None:
        self.settings = settings
        self.embedded = settings.url is None
        api_key = settings.api_key.get_secret_value() if settings.api_key is not None else None
        self.client = open_client(settings.url, settings.path, api_key=api_key, timeout=settings.timeout)
        self.lock = threading.RLock()
        self.index = CatalogIndex(self.client, alias=settings.alias, lock=self.lock)
        self.use_exact_search = self.embedded and settings.exact_local_search
        self._snapshot: CatalogSnapshot | None = None
        # Called (on the setter's thread) after every swap of the served snapshot: reindex, rollback,
        # item changes. The embedded multi-process mode's writer publishes it for the readers here.
        self.on_snapshot: list[Callable[[CatalogSnapshot], None]] = []

    # ------------------------------------------------------------- snapshot
    @property
    def snapshot(self) -> CatalogSnapshot:
        if self._snapshot is None:
            raise RuntimeError("no catalog snapshot loaded yet")
        return self._snapshot

    @property
    def has_snapshot(self) -> bool:
        return self._snapshot is not None

    def set_snapshot(self, snapshot: CatalogSnapshot) -> None:
        old = self._snapshot.collection if self._snapshot is not None else None
        self._snapshot = snapshot
        logger.info("serving %s (%d items; was %s)", snapshot.collection, len(snapshot), old)
        for listener in self.on_snapshot:
            try:
                listener(snapshot)
            except Exception:
                logger.exception("snapshot listener failed")

    def write_changes(self, snapshot: CatalogSnapshot, rows: Sequence[int], deleted: Sequence[str]) -> None:
        """Write ``rows`` of ``snapshot`` as points of its collection and delete ``deleted`` (blocking)."""
        with self.lock:
            if rows:
                vectors: dict[str, list[list[float]]] = {VECTOR_TEXT: snapshot.text_vectors[list(rows)].tolist()}
                if snapshot.seqrec_vectors is not None:
                    vectors[VECTOR_SEQREC] = snapshot.seqrec_vectors[list(rows)].tolist()
                batch = models.Batch(
                    ids=[point_id(snapshot.items[r].item_id) for r in rows],
                    vectors=vectors,  # type: ignore[arg-type]
                    payloads=[snapshot.payloads[r] for r in rows],
                )
                self.client.upsert(snapshot.collection, points=batch, wait=True)
            if deleted:
                self.client.delete(
                    snapshot.collection,
                    points_selector=models.PointIdsList(points=[point_id(i) for i in deleted]),
                    wait=True,
                )

    async def load_snapshot(self, collection: str | None = None) -> CatalogSnapshot:
        """Read a whole collection (default: the alias target) into a snapshot."""
        points = await asyncio.to_thread(self.index.load_points, collection)
        return await asyncio.to_thread(CatalogSnapshot.from_points, points)

    # --------------------------------------------------------------- search
    async def search(
        self, vector_name: str, vector: np.ndarray, k: int, flt: SearchFilter | None, snapshot: CatalogSnapshot
    ) -> list[SearchHit]:
        """Top-k of the served collection, filters applied before ranking."""
        if self.use_exact_search:
            return snapshot.searcher.search(vector_name, vector, k, flt)
        try:
            return await asyncio.to_thread(
                self.index.search, vector_name, vector, k, flt, collection=snapshot.collection
            )
        except Exception:
            # Another worker swapped the alias and dropped our collection before its message
            # reached us: answer from the alias (the reload follows with the message).
            if await asyncio.to_thread(self.client.collection_exists, snapshot.collection):
                raise
            logger.warning("collection %s is gone; searching alias %s", snapshot.collection, self.index.alias)
            return await asyncio.to_thread(self.index.search, vector_name, vector, k, flt)

    # ---------------------------------------------------------------- state
    async def alias_target(self) -> str | None:
        return await asyncio.to_thread(self.index.current_collection)

    async def count(self) -> int:
        return await asyncio.to_thread(self.index.count)

    def close(self) -> None:
        with self.lock:
            self.client.close()
