"""Generative recommendation: history -> sid tokens -> T5 -> constrained beam search -> items.

The artifact set holds the sid table of its own catalog and the codec (encoder MLP +
codebooks). The served catalog (a Qdrant snapshot) can differ after a reindex, so the
runtime derives a :class:`SidCatalog` per snapshot, aligned to the snapshot's rows:
- items the previous catalog (or the artifact table) had keep their sid;
- new items get codes from the codec applied to their text vector, and the smallest
  free collision digit (``SidTable.extend``), in snapshot row order;
- items no longer served drop out (their sids are not handed to anyone while this
  process lives, because the previous catalog stays the base).
The catalog is derived once per snapshot (by the reindex job before the alias swap,
or at the first request after another worker's swap) and cached by collection name,
so a request sees one snapshot and its sid table together.

Limitation (documented in docs): a worker that starts after several reindexes derives
new items' collision digits from the artifact table alone; two new items with the same
codes may then swap digits between workers. Items of the artifact set are always stable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from service.core.manifest import Manifest
from service.core.sid import SidCodec, SidError, SidSpec, SidTable, load_semantic_ids
from service.recommender.hybrid import HybridWeights
from service.semantic_ids.beam import beam_search
from service.semantic_ids.decoder import (
    item_id_embeddings,
    load_genrec,
    model_history_tokens,
    step_for,
    with_item_ids,
)
from service.semantic_ids.prefix_index import PrefixIndex

if TYPE_CHECKING:
    from service.features.generative import GenrecSpec

logger = logging.getLogger(__name__)


@dataclass
class SidCatalog:
    """Sid table aligned to one served snapshot (row i = snapshot row i)."""

    collection: str
    item_ids: list[str]
    table: SidTable
    index: PrefixIndex
    tokens: npt.NDArray[np.int64]  # [N, depth] encoder rows (+ the item-ID column for a model with item IDs)
    new_items: int  # items that got a sid from the codec (not in the base table)


def use_torch_threads(n: int) -> None:
    """Run this thread's torch ops on ``n`` intra-op threads (0: leave torch's setting). OpenMP keeps the
    count per calling thread, and decodes run in ``asyncio.to_thread`` workers, so each decode sets it
    (a no-op once it matches)."""
    if n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def torch_device(device: str) -> torch.device:
    if device in ("auto", "cuda"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class GenerativeRuntime:
    def __init__(
        self,
        spec: SidSpec,
        table: SidTable,
        codec: SidCodec,
        item_ids: Sequence[str],
        model: Any,
        *,
        device: torch.device,
        beam: int,
        max_items: int,
        prior_weight: float = 0.0,
    ) -> None:
        if len(table) != len(item_ids):
            raise SidError(f"sid table has {len(table)} rows for {len(item_ids)} items")
        if int(getattr(model.config, "user_buckets", 0) or 0) > 0:
            # TIGER's hashed user token measured no gain and was removed (docs/EXPERIMENTS.md).
            raise SidError(
                "generative model was trained with user tokens (user_buckets, a removed option:"
                " docs/EXPERIMENTS.md); rebuild the artifact set"
            )
        if model.config.vocab_size != spec.layout.vocab_size:
            raise SidError(
                f"generative model vocabulary {model.config.vocab_size} does not match the sid layout "
                f"({spec.layout.vocab_size} sid tokens)"
            )
        self.spec = spec
        self.layout = spec.layout
        self.codec = codec
        self.model = model
        self.device = device
        self.beam = beam
        self.max_items = max_items
        # Intra-op threads of torch for each decode (Settings.torch_threads; 0 = torch's default).
        self.torch_threads = 0
        # Hybrid mode's merge weights (Settings.hybrid_prior_weight / hybrid_generative_weight).
        self.hybrid_weights = HybridWeights()
        if not (np.isfinite(prior_weight) and prior_weight >= 0):
            raise SidError(f"genrec prior_weight must be a finite number >= 0, got {prior_weight}")
        # Weight of the item -> next item prior in prior-guided decoding (0 = none; the build picks it on
        # validation, service.semantic_ids.beam explains the decoding); the prior is the artifact's.
        self.prior_weight = float(prior_weight)
        if float(getattr(model.config, "prior_train_weight", 0.0) or 0.0) > 0:
            # Training next to the prior (a product-of-experts loss) measured no gain and was removed:
            # such a model needs the renormalised beam this runtime no longer decodes with.
            raise SidError(
                "generative model was trained next to the item -> next item prior (prior_train_weight, a removed"
                " option: docs/EXPERIMENTS.md); rebuild the artifact set with a plainly trained model"
            )
        self._base: dict[str, tuple[int, ...]] = {
            iid: tuple(row) for iid, row in zip(item_ids, table.sids.tolist(), strict=True)
        }
        # A model with item-ID input has one learned vector per item of its training table (= the
        # artifact table): those items keep it in every snapshot, other items have none.
        n_ids = item_id_embeddings(model)
        if n_ids and n_ids != len(item_ids):
            raise SidError(f"generative model has {n_ids} item-ID vectors for {len(item_ids)} items of the table")
        self._id_row: dict[str, int] | None = {iid: r for r, iid in enumerate(item_ids)} if n_ids else None
        self._catalogs: dict[str, SidCatalog] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_manifest(cls, root: Path, manifest: Manifest, item_ids: Sequence[str], device: str) -> GenerativeRuntime:
        """The runtime of an artifact set with the generative feature (``semantic_ids`` and ``genrec`` sections)."""
        from service.features import GENERATIVE, FeatureError, has_feature

        if not has_feature(GENERATIVE, manifest):
            raise SidError("the artifact set has no semantic_ids/genrec sections")
        try:
            spec = GENERATIVE.spec(manifest)
        except FeatureError as exc:
            raise SidError(str(exc)) from exc
        return cls.from_specs(root, spec.semantic_ids, spec.genrec, item_ids, device)

    @classmethod
    def from_specs(
        cls, root: Path, sid: SidSpec, genrec: GenrecSpec, item_ids: Sequence[str], device: str
    ) -> GenerativeRuntime:
        """The runtime from the parsed ``semantic_ids`` and ``genrec`` sections of the set at ``root``."""
        spec, table, codec = load_semantic_ids(root, sid.to_dict())
        dev = torch_device(device)
        model = load_genrec(root / genrec.dir, dev)
        return cls(
            spec,
            table,
            codec,
            item_ids,
            model,
            device=dev,
            beam=genrec.beam,
            max_items=genrec.max_items,
            prior_weight=genrec.prior_weight,
        )

    # ------------------------------------------------------------ catalogs
    def catalog(self, collection: str, item_ids: Sequence[str], text_vectors: npt.NDArray[np.float32]) -> SidCatalog:
        """The sid catalog of a snapshot (derived once, then cached by ``collection``: the service passes
        the snapshot's ``version``, collection + content digest, so a request holding an older snapshot
        of the same collection never gets the rows of a newer one)."""
        with self._lock:
            cached = self._catalogs.get(collection)
            if cached is not None:
                return cached
            cat = self._derive(collection, item_ids, text_vectors)
            # Keep the newest few: the served one and the one a slow request may still hold.
            self._catalogs = {**dict(list(self._catalogs.items())[-2:]), collection: cat}
            return cat

    def prepare_snapshot(self, snapshot: Any) -> dict[str, Any]:
        """Derive (and cache) the sid catalog of a snapshot before it is served: the reindex hook
        (before the alias swap; -> job stats) and the items API's (after a live change)."""
        cat = self.catalog(snapshot.version, snapshot.item_ids, snapshot.text_vectors)
        return {"sid_new_items": cat.new_items, "sid_unique_prefix_share": round(cat.table.unique_prefix_share(), 5)}

    def cached_sids(self, key: str, item_ids: Sequence[str]) -> npt.NDArray[np.int32] | None:
        """The sid table [N, depth] derived under ``key`` (a snapshot version) when it is aligned to
        ``item_ids``, else None (the embedded multi-process mode's writer publishes it, so readers hand
        out the same sids)."""
        with self._lock:
            cat = self._catalogs.get(key)
        if cat is None or cat.item_ids != list(item_ids):
            return None
        return np.asarray(cat.table.sids, dtype=np.int32)

    def adopt_sids(self, key: str, item_ids: Sequence[str], sids: npt.NDArray[np.int32]) -> SidCatalog:
        """Serve the snapshot ``key`` (its version) with a sid table derived elsewhere (the writer
        process) instead of deriving one here: same collision digits in every process."""
        table = SidTable(np.asarray(sids, dtype=np.int32).reshape(-1, self.layout.depth), self.layout)
        if len(table) != len(item_ids):
            raise SidError(f"sid table has {len(table)} rows for {len(item_ids)} items")
        known = set(self._base)
        cat = SidCatalog(
            collection=key,
            item_ids=list(item_ids),
            table=table,
            index=PrefixIndex(table.sids, self.layout, self.device),
            tokens=self._encoder_rows(table.tokens(), item_ids),
            new_items=sum(1 for iid in item_ids if iid not in known),
        )
        with self._lock:
            self._catalogs = {**dict(list(self._catalogs.items())[-2:]), key: cat}
        return cat

    def _derive(self, collection: str, item_ids: Sequence[str], text_vectors: npt.NDArray[np.float32]) -> SidCatalog:
        known: dict[str, tuple[int, ...]] = dict(self._base)
        for cat in self._catalogs.values():  # sids handed out by earlier snapshots stay
            known.update({iid: tuple(row) for iid, row in zip(cat.item_ids, cat.table.sids.tolist(), strict=True)})
        old_rows = [i for i, iid in enumerate(item_ids) if iid in known]
        new_rows = [i for i, iid in enumerate(item_ids) if iid not in known]
        base = SidTable(
            np.asarray([known[item_ids[i]] for i in old_rows], dtype=np.int32).reshape(-1, self.layout.depth),
            self.layout,
        )
        if new_rows:
            codes = self.codec.encode(self.spec.codec_input(text_vectors[new_rows]))  # [M, L]
            grown = base.extend(codes)
        else:
            grown = base
        order = np.empty(len(item_ids), dtype=np.int64)  # snapshot row -> row of ``grown``
        order[old_rows] = np.arange(len(old_rows))
        order[new_rows] = len(old_rows) + np.arange(len(new_rows))
        table = grown.select(order)
        logger.info(
            "sid catalog for %s: %d items (%d new, coded from text), unique 3-code prefix share %.4f",
            collection,
            len(table),
            len(new_rows),
            table.unique_prefix_share(),
        )
        return SidCatalog(
            collection=collection,
            item_ids=list(item_ids),
            table=table,
            index=PrefixIndex(table.sids, self.layout, self.device),
            tokens=self._encoder_rows(table.tokens(), item_ids),
            new_items=len(new_rows),
        )

    def _encoder_rows(self, tokens: npt.NDArray[np.int64], item_ids: Sequence[str]) -> npt.NDArray[np.int64]:
        """The items' encoder rows: their sid tokens [N, depth], plus the item-ID column for a model
        with item-ID input (the item's training-table row; none for items it was not trained on)."""
        if self._id_row is None:
            return tokens
        rows = np.array([self._id_row.get(iid, -1) for iid in item_ids], dtype=np.int64)
        return with_item_ids(tokens, rows)

    def history_item_tokens(self, text_vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        """Encoder rows for history items that are not in the catalog (given by text): codec codes,
        collision digit 0 (and no item ID). [M, T] -> [M, depth (+ 1)]"""
        codes = self.codec.encode(self.spec.codec_input(text_vectors))  # [M, L]
        sids = np.concatenate([codes, np.zeros((len(codes), 1), dtype=np.int32)], axis=1)
        tokens = self.layout.to_tokens(sids)
        return tokens if self._id_row is None else with_item_ids(tokens, np.full(len(tokens), -1))

    # -------------------------------------------------------------- decode
    def decode(
        self,
        histories: Sequence[npt.NDArray[np.int64]],
        catalog: SidCatalog,
        k: int,
        allowed: npt.NDArray[np.bool_] | None = None,
        log_prior: npt.NDArray[np.float32] | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Histories as token rows [L_i, depth] -> top-k (snapshot rows [B, k] (-1 = none), scores [B, k]).

        ``log_prior``: item log-prior over the snapshot rows [B, N], added with ``prior_weight``."""
        use_torch_threads(self.torch_threads)
        b = len(histories)
        # history_tokens indexes an item-token table: stack each history's tokens into one.
        flat = np.concatenate(histories, axis=0)  # [sum L_i, depth]
        offsets = np.cumsum([0] + [len(h) for h in histories])
        rows = [np.arange(offsets[i], offsets[i + 1]) for i in range(b)]
        ids, mask = model_history_tokens(self.model, flat, rows, self.max_items)
        step = step_for(self.model, ids, mask, self.device)
        allowed_t = None if allowed is None else torch.from_numpy(np.ascontiguousarray(allowed)).to(self.device)
        prior_t = None
        if log_prior is not None and self.prior_weight > 0:
            prior_t = torch.from_numpy(np.ascontiguousarray(log_prior, dtype=np.float32)).to(self.device)
        res = beam_search(step, catalog.index, b, max(self.beam, k), k, allowed_t, prior_t, self.prior_weight)
        return res.items.cpu().numpy(), res.scores.cpu().numpy()
