"""Hybrid mode: the union of dense (ANN) and generative (beam search) candidates, rescored
by one score.

Both candidate lists come from the same request filters (dense: inside the ANN search;
generative: as masks during decoding), so the union holds only allowed items. With the
transition prior the pool also holds the filtered-in successors of the context items (as
dense mode's does). Every pool item ``j`` is scored

    score(j) = u . v_j + w_prior * log p(j | context) + w_gen * (s_j - s_min)

``u . v_j``: the dense model's score of the user for the item (seqrec dot product when the
set has a seqrec model, else text cosine). ``s_j``: the item's beam score (log-probability
of its semantic ID, plus the genrec prior weight x log prior for a prior-guided beam),
``s_min`` the lowest beam score of the request: an item the beam did not return gets no
bonus, the beam's last item none either, its first the most. Beam log-probabilities are
on another scale than dot products, so only their differences within one request enter,
with their own weight. With both weights 0 the dense model alone orders the pool (the
generative side only adds candidates the ANN top-k missed). The weights are the merge's
knobs (:class:`HybridWeights`), picked on validation by ``recsvc-train bench-genrec --hybrid``
(``training.evaluation.hybrid.py``, which calls this function) and served from
``RECSVC_HYBRID_PRIOR_WEIGHT`` / ``RECSVC_HYBRID_GENERATIVE_WEIGHT``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

# Candidates of the dense side (with k) in the served pool and in bench-genrec --hybrid.
HYBRID_DENSE_POOL = 50


@dataclass(frozen=True)
class HybridWeights:
    """The merge's knobs: weight of log p(j | context) (the transition prior) and of the beam-score bonus."""

    prior: float = 0.0
    generative: float = 0.0

    def __post_init__(self) -> None:
        for name, value in (("prior", self.prior), ("generative", self.generative)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"hybrid {name} weight must be a finite number >= 0, got {value}")

    def label(self) -> str:
        return f"prior {self.prior:g}, generative {self.generative:g}"


def merge_and_rescore(
    dense_rows: Sequence[int],
    generative_rows: Sequence[int],
    item_vectors: F32,
    user: F32,
    k: int,
    *,
    generative_scores: Sequence[float] | None = None,
    extra_rows: Sequence[int] = (),
    log_prior: Callable[[I64], F32] | None = None,
    weights: HybridWeights = HybridWeights(),
) -> list[tuple[int, float]]:
    """Top-``k`` (row, score) of the union of the candidate lists (module docstring's score).

    item_vectors [N, D] (the dense model's item vectors, rows of the served snapshot), user [D].
    ``generative_rows`` (-1 = none) with their beam ``generative_scores``; ``extra_rows``: more
    candidates (the context's successors under the transition prior); ``log_prior(rows [P]) -> [P]``:
    log p(j | context) of pool rows, used when ``weights.prior`` > 0.
    Ties keep dense candidates first, then generative order, then ``extra_rows``.
    """
    gen = [int(r) for r in generative_rows]
    pool = list(dict.fromkeys([int(r) for r in dense_rows] + [r for r in gen if r >= 0] + [int(r) for r in extra_rows]))
    if not pool:
        return []
    rows = np.asarray(pool, dtype=np.int64)
    scores = (item_vectors[rows] @ user).astype(np.float64)  # [P]
    if weights.generative > 0 and generative_scores is not None:
        if len(generative_scores) != len(gen):
            raise ValueError(f"{len(generative_scores)} beam scores for {len(gen)} generative rows")
        beam = {r: float(s) for r, s in zip(gen, generative_scores, strict=True) if r >= 0 and math.isfinite(s)}
        if beam:
            floor = min(beam.values())
            bonus = np.fromiter((beam.get(r, floor) - floor for r in pool), dtype=np.float64, count=len(pool))
            scores += weights.generative * bonus
    if weights.prior > 0 and log_prior is not None:
        scores += weights.prior * np.asarray(log_prior(rows), dtype=np.float64)
    order = np.argsort(-scores, kind="stable")[:k]
    return [(int(rows[i]), float(scores[i])) for i in order]
