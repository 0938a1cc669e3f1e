"""/recommend orchestration: history -> user vector -> filtered ANN search -> ranked items.

Dense mode: each history entry becomes a seqrec item vector (catalog items from
the served snapshot, unseen items given by text through the live encoder and
the text-only fusion path), the ONNX user tower turns the last ``max_len`` of
them into a user vector, and Qdrant (or the exact in-process search in
embedded mode) ranks the served collection by dot product with filters
applied inside the search. Without a seqrec model the user is the normalised
mean of the history's text vectors, ranked by cosine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from service.core.index import ROW_KEY, VECTOR_SEQREC, VECTOR_TEXT
from service.errors import EmptyHistoryError, ModeUnavailableError, UnknownItemError
from service.recommender.dense import SeqRecRuntime
from service.recommender.filters import build_filter
from service.schemas import ItemRef, NewItem, RecommendRequest
from service.stores.cache import ResponseCache, cache_key
from service.stores.qdrant import CatalogSnapshot, QdrantStore

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
EmbedFn = Callable[[Sequence[str]], Awaitable[np.ndarray]]

AVAILABLE_MODES = ("dense",)


@dataclass(frozen=True)
class RecommendedItem:
    item_id: str
    score: float
    rank: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class RecommendResult:
    items: list[RecommendedItem]
    mode: str
    index_version: str
    model_version: str
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [
                {"item_id": it.item_id, "score": it.score, "rank": it.rank, "payload": it.payload} for it in self.items
            ],
            "mode": self.mode,
            "index_version": self.index_version,
            "model_version": self.model_version,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, cached: bool) -> RecommendResult:
        return cls(
            items=[RecommendedItem(**it) for it in d["items"]],
            mode=d["mode"],
            index_version=d["index_version"],
            model_version=d["model_version"],
            cached=cached,
        )


class Recommender:
    def __init__(
        self,
        *,
        store: QdrantStore,
        seqrec: SeqRecRuntime | None,
        embed: EmbedFn,
        model_version: str,
        cache: ResponseCache | None = None,
        cache_prefix: str = "recsvc",
        cache_ttl_s: int = 0,
        on_cache: Callable[[bool], None] | None = None,
    ) -> None:
        self.store = store
        self.seqrec = seqrec
        self.embed = embed
        self.model_version = model_version
        self.cache = cache
        self.cache_prefix = cache_prefix
        self.cache_ttl_s = cache_ttl_s
        self.on_cache = on_cache

    @property
    def max_len(self) -> int | None:
        return self.seqrec.max_len if self.seqrec is not None else None

    async def recommend(self, req: RecommendRequest) -> RecommendResult:
        if req.mode not in AVAILABLE_MODES:
            raise ModeUnavailableError(
                f"mode {req.mode!r} is not available yet: it needs semantic IDs and the generative model, "
                "which this artifact set does not include; use mode 'dense'",
                {"mode": req.mode, "available": list(AVAILABLE_MODES)},
            )
        entries = req.history_entries()
        if not entries:
            raise EmptyHistoryError()
        snapshot = self.store.snapshot  # one consistent view for the whole request
        unknown = [e.item_id for e in entries if isinstance(e, ItemRef) and e.item_id not in snapshot.row_of]
        if unknown:
            raise UnknownItemError(unknown)

        key = None
        if self.cache is not None and self.cache_ttl_s > 0:
            key = cache_key(self.cache_prefix, snapshot.collection, self.model_version, req.model_dump(mode="json"))
            hit = await self.cache.get(key)
            if self.on_cache is not None:
                self.on_cache(hit is not None)
            if hit is not None:
                return RecommendResult.from_dict(hit, cached=True)

        result = await self._recommend(req, entries, snapshot)
        if key is not None and self.cache is not None:
            await self.cache.set(key, result.to_dict(), self.cache_ttl_s)
        return result

    async def _recommend(
        self, req: RecommendRequest, entries: list[ItemRef | NewItem], snapshot: CatalogSnapshot
    ) -> RecommendResult:
        use_seqrec = self.seqrec is not None and snapshot.seqrec_vectors is not None
        # Only the last max_len entries shape the user vector; every history item is excluded.
        tail = entries[-self.seqrec.max_len :] if use_seqrec and self.seqrec is not None else entries
        new_texts = [e.item.encoder_text() for e in tail if isinstance(e, NewItem)]
        new_text_vectors = await self.embed(new_texts) if new_texts else None  # [M, T]

        if use_seqrec:
            assert self.seqrec is not None and snapshot.seqrec_vectors is not None
            user = await asyncio.to_thread(self._seqrec_user, tail, snapshot, new_text_vectors)  # [D]
            vector_name = VECTOR_SEQREC
        else:
            user = self._text_user(tail, snapshot, new_text_vectors)  # [T]
            vector_name = VECTOR_TEXT

        exclude = [e.item_id for e in entries if isinstance(e, ItemRef)] if req.exclude_history else []
        flt = build_filter(req.filters, exclude)
        hits = await self.store.search(vector_name, user, req.k, flt, snapshot)
        items = [
            RecommendedItem(
                item_id=h.item_id,
                score=h.score,
                rank=rank,
                payload={k: v for k, v in h.payload.items() if k != ROW_KEY},
            )
            for rank, h in enumerate(hits, start=1)
        ]
        return RecommendResult(
            items=items, mode=req.mode, index_version=snapshot.collection, model_version=self.model_version
        )

    def _seqrec_user(
        self, tail: Sequence[ItemRef | NewItem], snapshot: CatalogSnapshot, new_text_vectors: np.ndarray | None
    ) -> F32:
        assert self.seqrec is not None and snapshot.seqrec_vectors is not None
        new_item_vectors = None
        if new_text_vectors is not None:
            cold = np.zeros(new_text_vectors.shape[0], dtype=bool)
            new_item_vectors = self.seqrec.item_vectors(new_text_vectors, cold)  # [M, D]
        rows: list[np.ndarray] = []
        j = 0
        for e in tail:
            if isinstance(e, ItemRef):
                rows.append(snapshot.seqrec_vectors[snapshot.row_of[e.item_id]])
            else:
                assert new_item_vectors is not None
                rows.append(new_item_vectors[j])
                j += 1
        history = np.stack(rows).astype(np.float32)  # [L, D]
        return self.seqrec.user_vectors([history])[0]  # [D]

    @staticmethod
    def _text_user(
        tail: Sequence[ItemRef | NewItem], snapshot: CatalogSnapshot, new_text_vectors: np.ndarray | None
    ) -> F32:
        rows: list[np.ndarray] = []
        j = 0
        for e in tail:
            if isinstance(e, ItemRef):
                rows.append(snapshot.text_vectors[snapshot.row_of[e.item_id]])
            else:
                assert new_text_vectors is not None
                rows.append(new_text_vectors[j])
                j += 1
        mean = np.stack(rows).astype(np.float32).mean(axis=0)  # [T]
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
