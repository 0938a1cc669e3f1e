"""Hybrid mode: the union of dense (ANN) and generative (beam search) candidates, rescored
by one model.

Both candidate lists come from the same request filters (dense: inside the ANN search;
generative: as masks during decoding), so the union holds only allowed items. One score
ranks them all: the dense model's score of the user for each candidate (seqrec dot
product when the set has a seqrec model, else text cosine). Beam log-probabilities are
not comparable with those scores, so they only decide which items enter the pool: the
generative side adds items the ANN top-k missed, the dense model orders the pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def merge_and_rescore(
    dense_rows: Sequence[int],
    generative_rows: Sequence[int],
    item_vectors: npt.NDArray[np.float32],
    user: npt.NDArray[np.float32],
    k: int,
) -> list[tuple[int, float]]:
    """Top-``k`` (row, score) of the union of both candidate lists by ``item_vectors @ user``.

    item_vectors [N, D] (the dense model's item vectors, rows of the served snapshot), user [D].
    Ties keep dense candidates first, then generative order.
    """
    pool = list(dict.fromkeys([int(r) for r in dense_rows] + [int(r) for r in generative_rows if r >= 0]))
    if not pool:
        return []
    rows = np.asarray(pool, dtype=np.int64)
    scores = item_vectors[rows] @ user  # [P]
    order = np.argsort(-scores, kind="stable")[:k]
    return [(int(rows[i]), float(scores[i])) for i in order]
