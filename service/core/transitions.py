"""First-order item -> next item statistics, as a smoothed log-probability prior.

On the Amazon sets a large share of next items is the same "what follows this item"
pattern for every user, and a count table learns it exactly where a sequence model
trained for minutes learns it approximately. :class:`TransitionPrior` turns the
training sequences' transition counts into

    log p(j | last) = log((c(last, j) + beta * pop(j)) / (c(last) + beta))

(``pop`` is add-one smoothed popularity, so items never seen after ``last`` keep a
popularity order and an item never seen at all still has a finite prior). A sequence
model's log-softmax scores plus ``weight`` x this prior is the "+mc" ranking of the
harness (``training/evaluation/prior.py``); the weight is chosen on validation.

Beyond the next item (:class:`PriorShape`): pairs up to ``window`` positions apart can count too
(weight ``decay ** (offset - 1)``, and ``backward`` x that for the reversed pair, i.e. plain
co-occurrence within a window), and the prior can condition on the ``last`` most recent history
items instead of one, as the mixture

    p(j | history) = sum_m last_decay ** m * p(j | h_{-1-m}) / sum_m last_decay ** m

(``m`` = 0 for the most recent item). The defaults (window 1, last 1) are the first-order prior.

Numpy only (the service imports it); the counts live in CSR form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class PriorShape:
    """Which item pairs count and which history items the prior conditions on (module docstring)."""

    window: int = 1  # pairs (a, b) with b up to `window` positions after a
    decay: float = 1.0  # weight of a pair `offset` apart: decay ** (offset - 1)
    backward: float = 0.0  # the reversed pair (b, a) counts with backward x that weight
    last: int = 1  # the prior mixes p(. | h) over the `last` most recent history items
    last_decay: float = 1.0  # ... with weight last_decay ** m for the m-th most recent (m = 0, 1, ...)

    def __post_init__(self) -> None:
        if self.window < 1 or self.last < 1:
            raise ValueError(f"prior window and last must be >= 1, got {self.window} and {self.last}")
        if not (0 < self.decay <= 1 and 0 < self.last_decay <= 1):
            raise ValueError(f"prior decay and last_decay must be in (0, 1], got {self.decay} and {self.last_decay}")
        if not 0 <= self.backward <= 1:
            raise ValueError(f"prior backward weight must be in [0, 1], got {self.backward}")

    @property
    def first_order(self) -> bool:
        return self.window == 1 and self.backward == 0 and self.last == 1

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @property
    def label(self) -> str:
        if self.first_order:
            return "first-order"
        return (
            f"pairs within {self.window} (decay {self.decay:g}, backward {self.backward:g}), "
            f"last {self.last} items (decay {self.last_decay:g})"
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> PriorShape:
        """From a config mapping (unknown keys refused); None or {} -> the first-order prior."""
        d = dict(d or {})
        unknown = sorted(set(d) - set(asdict(cls())))
        if unknown:
            raise ValueError(f"unknown prior shape key(s) {unknown} (known: {', '.join(asdict(cls()))})")
        for k in ("window", "last"):  # counts (a JSON manifest may hold them as floats)
            if k in d:
                if float(d[k]) != int(d[k]):
                    raise ValueError(f"prior {k} must be a whole number, got {d[k]}")
                d[k] = int(d[k])
        return cls(**d)


def transition_counts(
    train: Sequence[Sequence[int]], n_items: int, shape: PriorShape | None = None
) -> tuple[I64, I64, npt.NDArray[np.float64]]:
    """(Weighted) counts of the pairs (a, b) of ``train`` that ``shape`` counts (default: consecutive
    pairs) as CSR over a. -> (indptr [N + 1], cols [U], counts [U])"""
    shape = shape or PriorShape()
    seqs = [np.asarray(s, dtype=np.int64) for s in train]
    flat = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
    if len(flat) and (flat.min() < 0 or flat.max() >= n_items):
        raise ValueError(f"training sequences hold item indices outside [0, {n_items})")
    keys: list[I64] = []
    weights: list[npt.NDArray[np.float64]] = []
    for off in range(1, shape.window + 1):
        a = np.concatenate([s[:-off] for s in seqs if len(s) > off] or [np.zeros(0, np.int64)])  # [P]
        b = np.concatenate([s[off:] for s in seqs if len(s) > off] or [np.zeros(0, np.int64)])  # [P]
        w = shape.decay ** (off - 1)
        keys.append(a * n_items + b)
        weights.append(np.full(len(a), w))
        if shape.backward > 0:
            keys.append(b * n_items + a)
            weights.append(np.full(len(a), shape.backward * w))
    uniq, inv = np.unique(np.concatenate(keys), return_inverse=True)  # [U], sorted by a then b
    counts = np.bincount(inv, weights=np.concatenate(weights), minlength=len(uniq))  # [U]
    indptr = np.searchsorted(uniq // n_items, np.arange(n_items + 1)).astype(np.int64)  # [N + 1]
    return indptr, (uniq % n_items).astype(np.int64), counts.astype(np.float64)


class TransitionPrior:
    """Smoothed log p(next = j | last item) from training transition counts."""

    def __init__(
        self,
        indptr: I64,
        cols: I64,
        counts: npt.NDArray[np.float64],
        pop: F32,
        beta: float,
        shape: PriorShape | None = None,
    ) -> None:
        n = len(pop)
        if indptr.shape != (n + 1,) or cols.shape != counts.shape:
            raise ValueError(f"CSR arrays do not match {n} items")
        if beta <= 0:
            raise ValueError(f"beta (smoothing) must be > 0, got {beta}")
        self.indptr, self.cols, self.counts = indptr, cols, counts
        self.pop = pop.astype(np.float32)  # [N], sums to 1
        self.beta = float(beta)
        self.shape = shape or PriorShape()  # how the counts were gathered and how histories are read
        self.row_totals = np.add.reduceat(np.append(counts, 0.0), indptr[:-1])  # [N]
        self.row_totals[indptr[:-1] == indptr[1:]] = 0.0  # reduceat repeats a value for empty rows

    @classmethod
    def from_sequences(
        cls, train: Sequence[Sequence[int]], n_items: int, beta: float = 1.0, shape: PriorShape | None = None
    ) -> TransitionPrior:
        indptr, cols, counts = transition_counts(train, n_items, shape)
        item_counts = np.bincount(np.fromiter((i for s in train for i in s), dtype=np.int64), minlength=n_items)
        pop = (item_counts + 1.0) / (item_counts.sum() + n_items)  # [N], add-one smoothed
        return cls(indptr, cols, counts, pop.astype(np.float32), beta, shape)

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
        totals = self.row_totals[last_a] + self.beta  # [B]
        out /= totals[:, None].astype(np.float32)
        return np.log(out, dtype=np.float32)

    def context(self, history: Sequence[int]) -> list[int]:
        """The history items the prior conditions on: the ``shape.last`` most recent, newest first."""
        return [int(i) for i in history[::-1][: self.shape.last]]

    def log_prob_context(self, contexts: Sequence[Sequence[int]]) -> F32:
        """contexts [B] (each: item indices, newest first, at most ``shape.last`` used) ->
        log of the ``last_decay``-weighted mixture of p(j | item) over each context [B, N]."""
        out = np.zeros((len(contexts), self.n_items), dtype=np.float32)  # [B, N]
        for r, ctx in enumerate(contexts):
            items = [int(a) for a in ctx[: self.shape.last]]
            if not items:
                raise ValueError(f"context {r} is empty")
            if min(items) < 0 or max(items) >= self.n_items:
                raise ValueError(f"context {r} holds item indices outside [0, {self.n_items})")
            total = 0.0
            for m, a in enumerate(items):
                w = self.shape.last_decay**m
                denom = float(self.row_totals[a]) + self.beta
                out[r] += np.float32(w * self.beta / denom) * self.pop
                lo, hi = self.indptr[a], self.indptr[a + 1]
                out[r, self.cols[lo:hi]] += (w * self.counts[lo:hi] / denom).astype(np.float32)
                total += w
            out[r] /= np.float32(total)
        return np.log(out, dtype=np.float32)

    def history_log_prob(self, histories: Sequence[Sequence[int]]) -> F32:
        """histories [B] (item indices, oldest first) -> log p(j | history) [B, N] (:meth:`context`)."""
        return self.log_prob_context([self.context(h) for h in histories])

    def successors_of(self, items: Sequence[int]) -> I64:
        """Items counted after (or, with ``shape.backward``, next to) any of ``items``, sorted."""
        parts = [self.successors(int(a)) for a in items]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    def successors(self, last: int) -> I64:
        """Items seen right after ``last`` in training (candidates the prior lifts most)."""
        return self.cols[self.indptr[last] : self.indptr[last + 1]]

    def save(self, path: Path) -> Path:
        arrays: dict[str, npt.ArrayLike] = {f"shape_{k}": v for k, v in self.shape.to_dict().items()}
        arrays |= {"indptr": self.indptr, "cols": self.cols, "counts": self.counts, "pop": self.pop, "beta": self.beta}
        np.savez(path, **arrays)  # type: ignore[arg-type]
        return path

    @classmethod
    def load(cls, path: Path) -> TransitionPrior:
        """Read :meth:`save`'s file; files written before :class:`PriorShape` are first-order priors."""
        with np.load(path) as z:
            defaults = PriorShape()
            shape = PriorShape(
                window=int(z["shape_window"]) if "shape_window" in z else defaults.window,
                decay=float(z["shape_decay"]) if "shape_decay" in z else defaults.decay,
                backward=float(z["shape_backward"]) if "shape_backward" in z else defaults.backward,
                last=int(z["shape_last"]) if "shape_last" in z else defaults.last,
                last_decay=float(z["shape_last_decay"]) if "shape_last_decay" in z else defaults.last_decay,
            )
            return cls(z["indptr"], z["cols"], z["counts"], z["pop"], float(z["beta"]), shape)
