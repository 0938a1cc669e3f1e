"""Dense rescoring with the item -> next item transition prior ("+ item->next prior" ranking).

The build (``training/jobs/build.py``) counts consecutive items of the dataset's sequences (all of
them by default, ``markov_counts``; :class:`service.core.transitions.TransitionPrior`) and picks a
weight ``w`` on validation. Serving
ranks a candidate pool by

    score(j) = u . v_j + w * log p(j | context)

where the context is the most recent history items the prior conditions on (its
:class:`~service.core.transitions.PriorShape` ``last``; one item, the last, for the first-order
prior), newest first, leaving out items given by text that the artifact set does not know.
``u . v_j`` is the seqrec dot product (log-softmax minus a per-user constant, so the ranking is the
one ``training/jobs/bench_seqrec.prior_ranks`` evaluates). The pool is the store's top
``max(k, pool)`` by dot product plus every filtered-in successor of the context items, so the items
the prior lifts most are never lost to the ANN cut-off.

The prior is indexed by the artifact set's item rows; the served collection may be a reindexed
catalog (items added, removed, reordered). :meth:`ServedPrior.align` maps a snapshot's rows to
artifact rows by item id, once per collection. Items the artifact set never saw (added by a
reindex) have zero transition counts, so their prior is the popularity smoothing alone with the
smallest popularity of a known item (an item never seen in training):
``log(beta * pop_min / (c(a) + beta))`` for a context item ``a`` (mixed over the context like the rest).
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
RANKING_PRIOR = "model+transition_prior"  # seqrec dot + w * log p(j | context)


class ServedPrior:
    """A :class:`TransitionPrior` over the artifact's items, served against any catalog snapshot."""

    def __init__(self, prior: TransitionPrior, item_ids: Sequence[str], weight: float, pool: int = 200) -> None:
        if prior.n_items != len(item_ids):
            raise ValueError(f"transition prior has {prior.n_items} items, the artifact set {len(item_ids)}")
        if not (np.isfinite(weight) and weight >= 0):
            raise ValueError(f"prior weight must be a finite number >= 0, got {weight}")
        if pool < 1:
            raise ValueError(f"transition_pool must be >= 1, got {pool}")
        self.prior = prior
        self.weight = float(weight)
        # Dense candidates (the store's top max(k, pool)) rescored with the prior (Settings.transition_pool).
        self.pool = int(pool)
        self.item_ids = list(item_ids)
        self.row_of = {iid: i for i, iid in enumerate(self.item_ids)}
        self.pop_floor = float(prior.pop.min())  # pop of an item with zero training count
        self._aligned: dict[str, tuple[I64, I64]] = {}  # snapshot version -> (art row per snapshot row, inverse)
        self._lock = threading.Lock()

    def align(self, collection: str, snapshot_ids: Sequence[str]) -> tuple[I64, I64]:
        """(artifact row of every snapshot row, -1 for new items [S]; snapshot row of every artifact
        row, -1 for items not served [N]), cached per ``collection`` key (the service passes the snapshot's
        version: collection + content digest, so a live item change re-aligns)."""
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

    @property
    def context_size(self) -> int:
        """How many of the most recent history entries the prior looks at."""
        return self.prior.shape.last

    def context(self, recent_ids: Sequence[str | None]) -> list[str]:
        """The context of a history whose last ``context_size`` entries are ``recent_ids`` (oldest first;
        None for an item given by text): the known ones, newest first. Empty: no prior applies."""
        tail = list(recent_ids)[-self.context_size :]
        return [i for i in reversed(tail) if i is not None and self.knows(i)]

    def successor_rows(self, context_ids: Sequence[str], collection: str, snapshot_ids: Sequence[str]) -> I64:
        """Snapshot rows of the items counted after the context items in training (served ones only)."""
        _, inv = self.align(collection, snapshot_ids)
        succ = inv[self.prior.successors_of([self.row_of[i] for i in context_ids])]
        return succ[succ >= 0]

    def log_prob_rows(self, context_ids: Sequence[str], rows: I64, collection: str, snapshot_ids: Sequence[str]) -> F32:
        """log p(j | context) for snapshot ``rows`` [C] -> [C]; new items get the zero-count prior."""
        if not context_ids or isinstance(context_ids, str):
            raise ValueError("the prior needs a list of at least one known context item id")
        art, _ = self.align(collection, snapshot_ids)
        ctx = [self.row_of[i] for i in context_ids]
        full = self.prior.log_prob_context([ctx])[0]  # [N]
        cand = art[rows]  # [C]
        out = np.empty(len(rows), dtype=np.float32)
        known = cand >= 0
        out[known] = full[cand[known]]
        # zero counts for every context item: sum_m w_m * beta * pop_min / (c(a_m) + beta) / sum_m w_m
        used = ctx[: self.prior.shape.last]
        w = self.prior.shape.last_decay ** np.arange(len(used))  # [M]
        denom = self.prior.row_totals[used] + self.prior.beta  # [M]
        floor = float((w * self.prior.beta * self.pop_floor / denom).sum() / w.sum())
        out[~known] = np.float32(np.log(floor))
        return out

    def rescore(
        self,
        user: F32,
        item_vectors: F32,
        rows: I64,
        context_ids: Sequence[str],
        collection: str,
        snapshot_ids: Sequence[str],
        k: int,
    ) -> list[tuple[int, float]]:
        """Top ``k`` of candidate snapshot ``rows`` [C] by ``u . v_j + w * log p(j | context)``.
        ``user`` [D], ``item_vectors`` [S, D] (the snapshot's seqrec vectors). -> [(row, score)]"""
        rows = np.unique(rows)  # [C], sorted: ties break by row, as in a full-catalog sort
        if len(rows) == 0:
            return []
        dots = np.einsum("cd,d->c", item_vectors[rows], user)  # [C]
        scores = dots + self.weight * self.log_prob_rows(context_ids, rows, collection, snapshot_ids)  # [C]
        order = np.argsort(-scores, kind="stable")[:k]
        return [(int(rows[i]), float(scores[i])) for i in order]
