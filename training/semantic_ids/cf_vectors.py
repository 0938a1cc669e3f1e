"""Collaborative item vectors from training sequences: PPMI of windowed co-occurrence, truncated SVD.

Used by the semantic-ID job when ``SemanticIdConfig.cf_dim`` > 0: the RQ-VAE then codes each
item's text vector concatenated with this vector, so items that users take together share code
prefixes (on Amazon Beauty, whose item text is a few keywords, the next item's first code is about
3x as predictable from the last item's code as with text-only codes). Counts come from the
training sequences only (never validation or test targets).

Co-occurrence: every ordered pair of items at most ``window`` positions apart in a sequence,
counted in both directions. PPMI: ``max(0, log(c_ij * total / (c_i * c_j)))``. The vectors are
``U * sqrt(S)`` of a rank-``dim`` randomized SVD (``torch.svd_lowrank`` on the sparse matrix),
rows L2-normalised; items that co-occur with nothing get zero rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

logger = logging.getLogger(__name__)


def cooccurrence_pairs(
    sequences: Sequence[Sequence[int]], window: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(rows, cols) of every ordered item pair at most ``window`` apart, both directions."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    rows: list[npt.NDArray[np.int64]] = []
    cols: list[npt.NDArray[np.int64]] = []
    for s in sequences:
        arr = np.asarray(s, dtype=np.int64)
        for gap in range(1, min(window, len(arr) - 1) + 1):
            a, b = arr[:-gap], arr[gap:]
            keep = a != b  # an item repeated next to itself says nothing about other items
            rows += [a[keep], b[keep]]
            cols += [b[keep], a[keep]]
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(rows), np.concatenate(cols)


def cooccurrence_vectors(
    sequences: Sequence[Sequence[int]], n_items: int, dim: int, window: int = 3, seed: int = 0
) -> npt.NDArray[np.float32]:
    """[n_items, dim] L2-normalised PPMI-SVD vectors (zero rows: items without co-occurrence)."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if dim >= n_items:
        raise ValueError(f"dim ({dim}) must be below the number of items ({n_items})")
    t0 = time.perf_counter()
    r, c = cooccurrence_pairs(sequences, window)
    if len(r) == 0:
        raise ValueError("no item pairs co-occur in the training sequences")
    if max(int(r.max()), int(c.max())) >= n_items:
        raise ValueError(f"item index out of range for {n_items} items")
    counts = torch.sparse_coo_tensor(
        torch.from_numpy(np.stack([r, c])),
        torch.ones(len(r), dtype=torch.float64),
        (n_items, n_items),
        check_invariants=True,
    ).coalesce()
    idx, val = counts.indices(), counts.values()  # [2, E], [E]
    marg = torch.zeros(n_items, dtype=torch.float64).index_add_(0, idx[0], val)  # [N] row sums (= col sums)
    pmi = torch.log(val * val.sum() / (marg[idx[0]] * marg[idx[1]]))  # [E]
    keep = pmi > 0
    ppmi = torch.sparse_coo_tensor(
        idx[:, keep], pmi[keep].float(), (n_items, n_items), check_invariants=True
    ).coalesce()
    torch.manual_seed(seed)
    u, s, _ = torch.svd_lowrank(ppmi, q=dim, niter=6)  # [N, dim], [dim]
    vec = (u * s.sqrt()).numpy()  # [N, dim]
    norms = np.linalg.norm(vec, axis=1, keepdims=True)
    vec = np.where(norms > 1e-12, vec / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
    isolated = int((marg == 0).sum())
    logger.info(
        "co-occurrence vectors: %d items, %d pairs (window %d), %d positive PMI entries, rank %d, "
        "%d items without co-occurrence, %.1fs",
        n_items,
        len(r) // 2,
        window,
        int(keep.sum()),
        dim,
        isolated,
        time.perf_counter() - t0,
    )
    return vec
