"""The service's view of the catalog index: the Qdrant client and the served snapshot.

A :class:`CatalogSnapshot` is the set of items the service serves right now:
ids, payloads (exactly the Qdrant payloads), text and seqrec vectors, all from
one collection. Histories are resolved against it, and it is swapped in one
assignment when a reindex (here or in another worker) moves the alias.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from service.config import QdrantSettings
from service.core.index import (
    ROW_KEY,
    VECTOR_SEQREC,
    VECTOR_TEXT,
    CatalogIndex,
    ExactSearcher,
    IndexedPoints,
    SearchFilter,
    SearchHit,
    open_client,
)
from service.core.items import Item, item_from_dict

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


@dataclass
class CatalogSnapshot:
    collection: str
    items: list[Item]
    payloads: list[dict[str, Any]]
    text_vectors: F32  # [N, T]
    seqrec_vectors: F32 | None  # [N, D]
    row_of: dict[str, int] = field(init=False)
    searcher: ExactSearcher = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.items)
        if len(self.payloads) != n or self.text_vectors.shape[0] != n:
            raise ValueError("snapshot arrays disagree in length")
        if self.seqrec_vectors is not None and self.seqrec_vectors.shape[0] != n:
            raise ValueError("snapshot seqrec vectors disagree in length")
        self.row_of = {it.item_id: i for i, it in enumerate(self.items)}
        vectors = {VECTOR_TEXT: self.text_vectors}
        if self.seqrec_vectors is not None:
            vectors[VECTOR_SEQREC] = self.seqrec_vectors
        self.searcher = ExactSearcher([it.item_id for it in self.items], self.payloads, vectors)

    def __len__(self) -> int:
        return len(self.items)

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
