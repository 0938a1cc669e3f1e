"""/recommend orchestration: history -> user vector -> filtered ANN search -> ranked items.

Dense mode: each history entry becomes a seqrec item vector (catalog items from
the served snapshot, unseen items given by text through the live encoder and
the text-only fusion path), the ONNX user tower turns the last ``max_len`` of
them into a user vector, and Qdrant (or the exact in-process search in
embedded mode) ranks the served collection by dot product with filters
applied inside the search. Without a seqrec model the user is the normalised
mean of the history's text vectors, ranked by cosine. When the artifact set has the item -> next
item transition prior (``markov.py``) and the last history entry is a catalog item it knows, the
store's top ``max(k, transition_pool)`` (``ServedPrior.pool``) plus the last item's filtered-in
successors are rescored by ``dot + w * log p(j | last)`` (response ``ranking`` =
"model+transition_prior"; else "model").

Generative mode (when the artifact set has semantic IDs and a genrec model): the
history's sid tokens go through the T5 encoder and the batched constrained beam
search decodes the top-k items of the served catalog (``generative.py``), filters and
history exclusion applied as masks while decoding. With a genrec ``prior_weight`` (picked by the
build on validation) and the transition prior above, the prior steers the beam at every level
(prior-guided decoding, ``service/semantic_ids/beam.py``; ``ranking`` = "model+transition_prior").
Hybrid mode: dense candidates, generative candidates (and, with the transition prior, the context's
successors), merged and rescored by ``u . v + w_prior * log p(j | context) + w_gen * beam bonus``
(``hybrid.py``; the weights are ``GenerativeRuntime.hybrid_weights``, picked on validation by bench-genrec --hybrid).

User profiles (``profiles.py``): with a model trained on profiles, the request's ``profile`` is
validated, verbalised by the shared function, embedded by the live encoder and projected; the offset
is added to every history item vector before the user tower (dense and hybrid modes). A ``user_id``
of the training data brings its stored profile; neither gives the mean profile. The response's
``profile_source`` says which was used ("ignored" when the model or the mode takes no profile).
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
from service.features import GENERATIVE, PROFILES, TRANSITIONS, FeatureRuntimes
from service.recommender.dense import SeqRecRuntime
from service.recommender.filters import build_filter
from service.recommender.generative import GenerativeRuntime, SidCatalog
from service.recommender.hybrid import HYBRID_DENSE_POOL, merge_and_rescore
from service.recommender.markov import RANKING_MODEL, RANKING_PRIOR, ServedPrior
from service.recommender.profiles import ProfileRuntime
from service.schemas import ItemRef, NewItem, RecommendRequest
from service.stores.cache import ResponseCache, cache_key
from service.stores.qdrant import CatalogSnapshot, QdrantStore

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
EmbedFn = Callable[[Sequence[str]], Awaitable[np.ndarray]]

AVAILABLE_MODES = ("dense",)  # without a generative model; with one also "generative" and "hybrid"


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
    profile_source: str = "none"
    ranking: str = RANKING_MODEL

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [
                {"item_id": it.item_id, "score": it.score, "rank": it.rank, "payload": it.payload} for it in self.items
            ],
            "mode": self.mode,
            "index_version": self.index_version,
            "model_version": self.model_version,
            "profile_source": self.profile_source,
            "ranking": self.ranking,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, cached: bool) -> RecommendResult:
        return cls(
            items=[RecommendedItem(**it) for it in d["items"]],
            mode=d["mode"],
            index_version=d["index_version"],
            model_version=d["model_version"],
            cached=cached,
            profile_source=d.get("profile_source", "none"),
            ranking=d.get("ranking", RANKING_MODEL),
        )


def _history_rows(
    entries: Sequence[ItemRef | NewItem],
    snapshot: CatalogSnapshot,
    known: np.ndarray,
    new: np.ndarray | None,
) -> list[np.ndarray]:
    """One row per history entry, in order: ``known[row of the item]`` for catalog items, the
    next row of ``new`` (computed for the ``NewItem`` entries, in their order) for unseen ones."""
    rows: list[np.ndarray] = []
    j = 0
    for e in entries:
        if isinstance(e, ItemRef):
            rows.append(known[snapshot.row_of[e.item_id]])
        else:
            assert new is not None
            rows.append(new[j])
            j += 1
    return rows


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
        features: FeatureRuntimes | None = None,
    ) -> None:
        """``features``: the served features' runtimes (``service.features``; the artifact set's, after the
        settings were applied): user profiles, the transition prior (with its candidate pool), the
        generative model (with the hybrid merge weights)."""
        features = features or FeatureRuntimes()
        profiles = features.get(PROFILES)
        transitions = features.get(TRANSITIONS)
        generative = features.get(GENERATIVE)
        if profiles is not None and seqrec is None:
            raise ValueError("profiles need the seqrec model they were trained with")
        if transitions is not None and seqrec is None:
            raise ValueError("the transition prior is added to seqrec scores: it needs the seqrec model")
        self.features = features
        self.transitions: ServedPrior | None = transitions
        self.generative: GenerativeRuntime | None = generative
        self.profiles: ProfileRuntime | None = profiles
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

    @property
    def available_modes(self) -> tuple[str, ...]:
        return AVAILABLE_MODES + (("generative", "hybrid") if self.generative is not None else ())

    async def recommend(self, req: RecommendRequest) -> RecommendResult:
        if req.mode not in self.available_modes:
            raise ModeUnavailableError(
                f"mode {req.mode!r} is not available: it needs semantic IDs and the generative model, "
                "which this artifact set does not include; use mode 'dense'",
                {"mode": req.mode, "available": list(self.available_modes)},
            )
        entries = req.history_entries()
        if not entries:
            raise EmptyHistoryError()
        snapshot = self.store.snapshot  # one consistent view for the whole request
        unknown = [e.item_id for e in entries if isinstance(e, ItemRef) and e.item_id not in snapshot.row_of]
        if unknown:
            raise UnknownItemError(unknown)
        if req.profile and self.profiles is not None and req.mode != "generative":
            self.profiles.validate(req.profile)  # 422 before any work (and before the cache)

        key = None
        if self.cache is not None and self.cache_ttl_s > 0:
            # Workers with the transition prior switched off rank differently: keep their entries apart.
            ranking = RANKING_PRIOR if self.transitions is not None else RANKING_MODEL
            # snapshot.version = collection + content digest: an alias swap or any item change (here or
            # applied from another worker's message) moves every request to new keys.
            key = cache_key(
                self.cache_prefix, snapshot.version, f"{self.model_version}|{ranking}", req.model_dump(mode="json")
            )
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
        if req.mode == "generative":
            return await self._generative(req, entries, snapshot)
        if req.mode == "hybrid":
            return await self._hybrid(req, entries, snapshot)
        return await self._dense(req, entries, snapshot)

    # ----------------------------------------------------------- generative
    def _sid_catalog(self, snapshot: CatalogSnapshot) -> SidCatalog:
        assert self.generative is not None
        return self.generative.catalog(snapshot.version, snapshot.item_ids, snapshot.text_vectors)

    async def _decode(
        self, req: RecommendRequest, entries: list[ItemRef | NewItem], snapshot: CatalogSnapshot, k: int
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Beam search for one request: (snapshot rows [k] (-1 = none), scores [k], whether the
        transition prior guided the decoding)."""
        gen = self.generative
        assert gen is not None
        catalog = await asyncio.to_thread(self._sid_catalog, snapshot)
        tail = entries[-gen.max_items :]
        new_texts = [e.item.encoder_text() for e in tail if isinstance(e, NewItem)]
        new_tokens = gen.history_item_tokens(await self.embed(new_texts)) if new_texts else None  # [M, depth]
        rows = _history_rows(tail, snapshot, catalog.tokens, new_tokens)
        exclude = [e.item_id for e in entries if isinstance(e, ItemRef)] if req.exclude_history else []
        mask = snapshot.searcher.mask(build_filter(req.filters, exclude))  # [N] or None
        allowed = None if mask is None else mask[None, :]
        log_prior = self._generative_prior(entries, snapshot)
        items, scores = await asyncio.to_thread(gen.decode, [np.stack(rows)], catalog, k, allowed, log_prior)
        return items[0], scores[0], log_prior is not None

    def _generative_prior(self, entries: list[ItemRef | NewItem], snapshot: CatalogSnapshot) -> np.ndarray | None:
        """log p(j | context) over the snapshot's rows [1, N] for prior-guided decoding, or None: no
        genrec prior weight, no transition prior, or no known item in the context (history by text)."""
        prior, gen = self.transitions, self.generative
        if prior is None or gen is None or gen.prior_weight <= 0:
            return None
        context = prior.context([e.item_id if isinstance(e, ItemRef) else None for e in entries])
        if not context:
            return None
        rows = np.arange(len(snapshot.item_ids), dtype=np.int64)
        return prior.log_prob_rows(context, rows, snapshot.version, snapshot.item_ids)[None, :]

    def _result(
        self,
        req: RecommendRequest,
        snapshot: CatalogSnapshot,
        scored: list[tuple[int, float]],
        profile_source: str,
        ranking: str = RANKING_MODEL,
    ) -> RecommendResult:
        items = [
            RecommendedItem(
                item_id=snapshot.items[row].item_id,
                score=score,
                rank=rank,
                payload={k: v for k, v in snapshot.payloads[row].items() if k != ROW_KEY},
            )
            for rank, (row, score) in enumerate(scored, start=1)
        ]
        return RecommendResult(
            items=items,
            mode=req.mode,
            index_version=snapshot.collection,
            model_version=self.model_version,
            profile_source=profile_source,
            ranking=ranking,
        )

    async def _generative(
        self, req: RecommendRequest, entries: list[ItemRef | NewItem], snapshot: CatalogSnapshot
    ) -> RecommendResult:
        rows, scores, guided = await self._decode(req, entries, snapshot, req.k)
        scored = [(int(r), float(s)) for r, s in zip(rows, scores, strict=True) if r >= 0]
        # The generative model has no profile input.
        source = "ignored" if self._profile_given(req) else "none"
        return self._result(req, snapshot, scored, source, RANKING_PRIOR if guided else RANKING_MODEL)

    async def _hybrid(
        self, req: RecommendRequest, entries: list[ItemRef | NewItem], snapshot: CatalogSnapshot
    ) -> RecommendResult:
        """Dense top-``max(k, HYBRID_DENSE_POOL)`` + the beam's items (+ the context's successors under the
        transition prior), rescored by the dense score, the prior and the beam bonus (hybrid.py)."""
        assert self.generative is not None
        weights = self.generative.hybrid_weights
        user, vector_name, source = await self._user_vector(entries, snapshot, req)
        exclude = [e.item_id for e in entries if isinstance(e, ItemRef)] if req.exclude_history else []
        flt = build_filter(req.filters, exclude)
        hits = await self.store.search(vector_name, user, max(req.k, HYBRID_DENSE_POOL), flt, snapshot)
        gen_rows, gen_scores, guided = await self._decode(req, entries, snapshot, max(req.k, self.generative.beam))
        if vector_name == VECTOR_SEQREC:
            assert snapshot.seqrec_vectors is not None
            item_vectors = snapshot.seqrec_vectors
        else:
            tv = snapshot.text_vectors
            item_vectors = (tv / np.maximum(np.linalg.norm(tv, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        succ: np.ndarray = np.zeros(0, dtype=np.int64)
        log_prior: Callable[[np.ndarray], np.ndarray] | None = None
        prior = self.transitions
        if prior is not None and weights.prior > 0 and vector_name == VECTOR_SEQREC:
            recent = entries[-prior.context_size :]
            context = prior.context([e.item_id if isinstance(e, ItemRef) else None for e in recent])
            if context:
                ids = snapshot.item_ids
                succ = prior.successor_rows(context, snapshot.collection, ids)  # [S_ctx]
                mask = snapshot.searcher.mask(flt)  # [N] allowed rows, None = all
                if mask is not None:
                    succ = succ[mask[succ]]

                def log_prior(rows: np.ndarray) -> np.ndarray:
                    assert prior is not None
                    return prior.log_prob_rows(context, rows, snapshot.collection, ids)

        scored = merge_and_rescore(
            [snapshot.row_of[h.item_id] for h in hits],
            gen_rows.tolist(),
            item_vectors,
            user,
            req.k,
            generative_scores=gen_scores.tolist(),
            extra_rows=succ.tolist(),
            log_prior=log_prior,
            weights=weights,
        )
        uses_prior = log_prior is not None or (guided and weights.generative > 0)
        return self._result(req, snapshot, scored, source, RANKING_PRIOR if uses_prior else RANKING_MODEL)

    # ---------------------------------------------------------------- dense
    @staticmethod
    def _profile_given(req: RecommendRequest) -> bool:
        return bool(req.profile) or req.user_id is not None

    def _profile_sentence(self, req: RecommendRequest) -> str | None:
        """The request profile's sentence (validated) for a model with profiles; None when there is none."""
        if self.profiles is None or not req.profile:
            return None
        profile = self.profiles.validate(req.profile)
        # Every value null: no information, served as if no profile was given.
        return self.profiles.sentence(profile) if profile else None

    def _profile_offset(self, req: RecommendRequest, vector: np.ndarray | None) -> tuple[F32 | None, str]:
        """(offset [D] added to every history item | None, profile_source) for a seqrec user vector.
        ``vector`` [P]: the embedded sentence of the request's profile, if it had one."""
        if self.profiles is None:
            return None, "ignored" if self._profile_given(req) else "none"
        if vector is not None:
            return self.profiles.offset(vector), "request"
        if req.user_id is not None:
            stored = self.profiles.user_offset(req.user_id)
            if stored is not None:
                return stored, "user"
        return self.profiles.default_offset, "default"

    async def _user_vector(
        self, entries: list[ItemRef | NewItem], snapshot: CatalogSnapshot, req: RecommendRequest
    ) -> tuple[F32, str, str]:
        """The dense user vector, the collection vector it is compared with, and the profile source."""
        use_seqrec = self.seqrec is not None and snapshot.seqrec_vectors is not None
        # Only the last max_len entries shape the user vector (every history item is still excluded).
        tail = entries[-self.seqrec.max_len :] if use_seqrec and self.seqrec is not None else entries
        new_texts = [e.item.encoder_text() for e in tail if isinstance(e, NewItem)]
        sentence = self._profile_sentence(req) if use_seqrec else None
        profile_vector: np.ndarray | None = None  # [T]
        if sentence is not None and self.profiles is not None:
            profile_vector = self.profiles.cached_vector(sentence)
        embed_sentence = sentence is not None and profile_vector is None
        # One encoder call for the new items and the profile sentence (one batching wait, not two).
        texts = new_texts + ([sentence] if embed_sentence and sentence is not None else [])
        vectors = await self.embed(texts) if texts else None  # [M (+1), T]
        new_text_vectors = vectors[: len(new_texts)] if vectors is not None and new_texts else None  # [M, T]
        if embed_sentence and vectors is not None and sentence is not None and self.profiles is not None:
            profile_vector = vectors[-1]
            self.profiles.remember(sentence, profile_vector)
        if use_seqrec:
            offset, source = self._profile_offset(req, profile_vector)
            user = await asyncio.to_thread(self._seqrec_user, tail, snapshot, new_text_vectors, offset)  # [D]
            return user, VECTOR_SEQREC, source
        # Text-only fallback (no seqrec vectors in the index): the mean of the history's text vectors.
        source = "ignored" if self._profile_given(req) else "none"
        return self._text_user(tail, snapshot, new_text_vectors), VECTOR_TEXT, source

    async def _dense(
        self, req: RecommendRequest, entries: list[ItemRef | NewItem], snapshot: CatalogSnapshot
    ) -> RecommendResult:
        user, vector_name, source = await self._user_vector(entries, snapshot, req)

        exclude = [e.item_id for e in entries if isinstance(e, ItemRef)] if req.exclude_history else []
        flt = build_filter(req.filters, exclude)
        prior = self.transitions
        context: list[str] = []
        if prior is not None:
            recent = entries[-prior.context_size :]
            context = prior.context([e.item_id if isinstance(e, ItemRef) else None for e in recent])
        if prior is not None and context and vector_name == VECTOR_SEQREC and snapshot.seqrec_vectors is not None:
            # "+ item->next prior": the store's top max(k, pool) by dot product (filters applied in the
            # search) plus the filtered-in successors of the context items, rescored by
            # dot + w * log p(j | context) (the last history item, or the prior's last few).
            hits = await self.store.search(vector_name, user, max(req.k, prior.pool), flt, snapshot)
            ids = snapshot.item_ids
            succ = prior.successor_rows(context, snapshot.version, ids)  # [S_ctx]
            mask = snapshot.searcher.mask(flt)  # [N] allowed rows, None = all
            if mask is not None:
                succ = succ[mask[succ]]
            rows = np.concatenate([np.array([snapshot.row_of[h.item_id] for h in hits], dtype=np.int64), succ])
            scored = prior.rescore(user, snapshot.seqrec_vectors, rows, context, snapshot.version, ids, req.k)
            return self._result(req, snapshot, scored, source, RANKING_PRIOR)
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
            items=items,
            mode=req.mode,
            index_version=snapshot.collection,
            model_version=self.model_version,
            profile_source=source,
        )

    def _seqrec_user(
        self,
        tail: Sequence[ItemRef | NewItem],
        snapshot: CatalogSnapshot,
        new_text_vectors: np.ndarray | None,
        offset: np.ndarray | None = None,
    ) -> F32:
        assert self.seqrec is not None and snapshot.seqrec_vectors is not None
        new_item_vectors = None
        if new_text_vectors is not None:
            cold = np.zeros(new_text_vectors.shape[0], dtype=bool)
            new_item_vectors = self.seqrec.item_vectors(new_text_vectors, cold)  # [M, D]
        rows = _history_rows(tail, snapshot, snapshot.seqrec_vectors, new_item_vectors)
        history = np.stack(rows).astype(np.float32)  # [L, D]
        offsets = None if offset is None else offset[None, :]  # [1, D]
        return self.seqrec.user_vectors([history], offsets)[0]  # [D]

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
