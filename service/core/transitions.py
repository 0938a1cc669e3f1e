"""First-order item -> next item statistics, as a smoothed log-probability prior.

On the Amazon sets a large share of next items is the same "what follows this item"
pattern for every user, and a count table learns it exactly where a sequence model
trained for minutes learns it approximately. :class:`TransitionPrior` turns the
training sequences' transition counts into

    log p(j | last) = log((c(last, j) + beta * pop(j)) / (c(last) + beta))

(``pop`` is add-one smoothed popularity, so items never seen after ``last`` keep a
popularity order and an item never seen at all still has a finite prior). A sequence
model's log-softmax scores plus ``weight`` x this prior is the "+mc" ranking of the
harness (``training/jobs/bench_seqrec.py``); the weight is chosen on validation.

Numpy only (the service imports it); the counts live in CSR form.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def transition_counts(train: Sequence[Sequence[int]], n_items: int) -> tuple[I64, I64, npt.NDArray[np.float64]]:
    """Counts of consecutive pairs (a, b) in ``train`` as CSR over a. -> (indptr [N + 1], cols [U], counts [U])"""
    prev = np.fromiter((a for s in train for a in s[:-1]), dtype=np.int64)  # [P]
    nxt = np.fromiter((b for s in train for b in s[1:]), dtype=np.int64)  # [P]
    if len(prev) and (min(prev.min(), nxt.min()) < 0 or max(prev.max(), nxt.max()) >= n_items):
        raise ValueError(f"training sequences hold item indices outside [0, {n_items})")
    keys, counts = np.unique(prev * n_items + nxt, return_counts=True)  # [U], sorted by prev then next
    indptr = np.searchsorted(keys // n_items, np.arange(n_items + 1)).astype(np.int64)  # [N + 1]
    return indptr, (keys % n_items).astype(np.int64), counts.astype(np.float64)


class TransitionPrior:
    """Smoothed log p(next = j | last item) from training transition counts."""

    def __init__(self, indptr: I64, cols: I64, counts: npt.NDArray[np.float64], pop: F32, beta: float) -> None:
        n = len(pop)
        if indptr.shape != (n + 1,) or cols.shape != counts.shape:
            raise ValueError(f"CSR arrays do not match {n} items")
        if beta <= 0:
            raise ValueError(f"beta (smoothing) must be > 0, got {beta}")
        self.indptr, self.cols, self.counts = indptr, cols, counts
        self.pop = pop.astype(np.float32)  # [N], sums to 1
        self.beta = float(beta)
        self.row_totals = np.add.reduceat(np.append(counts, 0.0), indptr[:-1])  # [N]
        self.row_totals[indptr[:-1] == indptr[1:]] = 0.0  # reduceat repeats a value for empty rows

    @classmethod
    def from_sequences(cls, train: Sequence[Sequence[int]], n_items: int, beta: float = 1.0) -> TransitionPrior:
        indptr, cols, counts = transition_counts(train, n_items)
        item_counts = np.bincount(np.fromiter((i for s in train for i in s), dtype=np.int64), minlength=n_items)
        pop = (item_counts + 1.0) / (item_counts.sum() + n_items)  # [N], add-one smoothed
        return cls(indptr, cols, counts, pop.astype(np.float32), beta)

    @property
    def n_items(self) -> int:
        return len(self.pop)

    def log_prob(self, last: npt.ArrayLike) -> F32:
        """last [B] item indices -> log p(j | last) [B, N]."""
        last_a = np.asarray(last, dtype=np.int64)
        if last_a.ndim != 1 or (len(last_a) and (last_a.min() < 0 or last_a.max() >= self.n_items)):
            raise ValueError(f"last must be item indices in [0, {self.n_items}), shape [B]")
        out = np.tile(self.beta * self.pop, (len(last_a), 1))  # [B, N]
        for r, a in enumerate(last_a):
            lo, hi = self.indptr[a], self.indptr[a + 1]
            out[r, self.cols[lo:hi]] += self.counts[lo:hi]
        out /= (self.row_totals[last_a] + self.beta)[:, None].astype(np.float32)
        return np.log(out, dtype=np.float32)

    def successors(self, last: int) -> I64:
        """Items seen right after ``last`` in training (candidates the prior lifts most)."""
        return self.cols[self.indptr[last] : self.indptr[last + 1]]

    def save(self, path: Path) -> Path:
        np.savez(path, indptr=self.indptr, cols=self.cols, counts=self.counts, pop=self.pop, beta=self.beta)
        return path

    @classmethod
    def load(cls, path: Path) -> TransitionPrior:
        with np.load(path) as z:
            return cls(z["indptr"], z["cols"], z["counts"], z["pop"], float(z["beta"]))
