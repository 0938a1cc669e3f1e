"""Dense rescoring with the item -> next item transition prior ("+ item->next prior" ranking).

The build (``training/jobs/build.py``) counts consecutive items of the seqrec training sequences
(:class:`service.core.transitions.TransitionPrior`) and picks a weight ``w`` on validation. Serving
ranks a candidate pool by

    score(j) = u . v_j + w * log p(j | last history item)

``u . v_j`` is the seqrec dot product (log-softmax minus a per-user constant, so the ranking is the
one ``training/jobs/bench_seqrec.prior_ranks`` evaluates). The pool is the store's top
``max(k, pool)`` by dot product plus every filtered-in successor of the last item, so the items the
prior lifts most are never lost to the ANN cut-off.

The prior is indexed by the artifact set's item rows; the served collection may be a reindexed
catalog (items added, removed, reordered). :meth:`ServedPrior.align` maps a snapshot's rows to
artifact rows by item id, once per collection. Items the artifact set never saw (added by a
reindex) have zero transition counts, so their prior is the popularity smoothing alone with the
smallest popularity of a known item (an item never seen in training):
``log(beta * pop_min / (c(last) + beta))``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from service.core.transitions import TransitionPrior

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

RANKING_MODEL = "model"  # seqrec (or text) scores alone
RANKING_PRIOR = "model+transition_prior"  # seqrec dot + w * log p(j | last)


class ServedPrior:
    """A :class:`TransitionPrior` over the artifact's items, served against any catalog snapshot."""

    def __init__(self, prior: TransitionPrior, item_ids: Sequence[str], weight: float) -> None:
        if prior.n_items != len(item_ids):
            raise ValueError(f"transition prior has {prior.n_items} items, the artifact set {len(item_ids)}")
        if not (np.isfinite(weight) and weight >= 0):
            raise ValueError(f"prior weight must be a finite number >= 0, got {weight}")
        self.prior = prior
        self.weight = float(weight)
        self.item_ids = list(item_ids)
        self.row_of = {iid: i for i, iid in enumerate(self.item_ids)}
        self.pop_floor = float(prior.pop.min())  # pop of an item with zero training count
        self._aligned: dict[str, tuple[I64, I64]] = {}  # collection -> (art row per snapshot row, inverse)
        self._lock = threading.Lock()

    def align(self, collection: str, snapshot_ids: Sequence[str]) -> tuple[I64, I64]:
        """(artifact row of every snapshot row, -1 for new items [S]; snapshot row of every artifact
        row, -1 for items not served [N]), cached per collection name."""
        with self._lock:
            hit = self._aligned.get(collection)
            if hit is not None and len(hit[0]) == len(snapshot_ids):
                return hit
        art = np.fromiter((self.row_of.get(i, -1) for i in snapshot_ids), dtype=np.int64, count=len(snapshot_ids))
        inv = np.full(self.prior.n_items, -1, dtype=np.int64)  # [N]
        known = art >= 0
        inv[art[known]] = np.nonzero(known)[0]
        with self._lock:
            if len(self._aligned) > 4:  # old collections after reindexes
                self._aligned.clear()
            self._aligned[collection] = (art, inv)
        return art, inv

    def knows(self, item_id: str) -> bool:
        return item_id in self.row_of

    def successor_rows(self, last_item_id: str, collection: str, snapshot_ids: Sequence[str]) -> I64:
        """Snapshot rows of the items seen right after ``last_item_id`` in training (served ones only)."""
        _, inv = self.align(collection, snapshot_ids)
        succ = inv[self.prior.successors(self.row_of[last_item_id])]
        return succ[succ >= 0]

    def log_prob_rows(self, last_item_id: str, rows: I64, collection: str, snapshot_ids: Sequence[str]) -> F32:
        """log p(j | last) for snapshot ``rows`` [C] -> [C]; new items get the zero-count prior."""
        art, _ = self.align(collection, snapshot_ids)
        last = self.row_of[last_item_id]
        full = self.prior.log_prob(np.array([last]))[0]  # [N]
        cand = art[rows]  # [C]
        out = np.empty(len(rows), dtype=np.float32)
        known = cand >= 0
        out[known] = full[cand[known]]
        denom = float(self.prior.row_totals[last]) + self.prior.beta
        out[~known] = np.float32(np.log(self.prior.beta * self.pop_floor / denom))
        return out

    def rescore(
        self,
        user: F32,
        item_vectors: F32,
        rows: I64,
        last_item_id: str,
        collection: str,
        snapshot_ids: Sequence[str],
        k: int,
    ) -> list[tuple[int, float]]:
        """Top ``k`` of candidate snapshot ``rows`` [C] by ``u . v_j + w * log p(j | last)``.
        ``user`` [D], ``item_vectors`` [S, D] (the snapshot's seqrec vectors). -> [(row, score)]"""
        rows = np.unique(rows)  # [C], sorted: ties break by row, as in a full-catalog sort
        if len(rows) == 0:
            return []
        dots = np.einsum("cd,d->c", item_vectors[rows], user)  # [C]
        scores = dots + self.weight * self.log_prob_rows(last_item_id, rows, collection, snapshot_ids)  # [C]
        order = np.argsort(-scores, kind="stable")[:k]
        return [(int(rows[i]), float(scores[i])) for i in order]
