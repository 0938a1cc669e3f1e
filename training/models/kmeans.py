"""The one k-means: product-quantization codebooks (:mod:`training.models.pq`) and the RQ-VAE
codebook initialisation (:mod:`training.models.rqvae`) both use it.

:func:`kmeans` is plain Lloyd iterations from a k-means++ start (numpy, float64; exact squared
Euclidean distances), with empty clusters re-seeded at the points farthest from their
centroid, stopping early once no assignment changes. :func:`assign_reference` is the slow,
obviously-correct assignment the tests compare the vectorised one against.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def sq_distances(x: np.ndarray, centroids: np.ndarray) -> npt.NDArray[np.float64]:
    """Squared Euclidean distances. x [N, d], centroids [K, d] -> [N, K] (float64, >= 0)."""
    x64 = x.astype(np.float64, copy=False)
    c64 = centroids.astype(np.float64, copy=False)
    d = (x64 * x64).sum(1)[:, None] - 2.0 * (x64 @ c64.T) + (c64 * c64).sum(1)[None, :]  # [N, K]
    return np.maximum(d, 0.0)


def assign(x: np.ndarray, centroids: np.ndarray, chunk: int = 8192) -> I64:
    """Index of the nearest centroid of each row (lowest index on ties). -> [N]"""
    out = np.empty(x.shape[0], dtype=np.int64)
    for s in range(0, x.shape[0], chunk):
        out[s : s + chunk] = sq_distances(x[s : s + chunk], centroids).argmin(1)
    return out


def assign_reference(x: np.ndarray, centroids: np.ndarray) -> I64:
    """One row at a time, the definition of :func:`assign` (for tests)."""
    out = np.empty(x.shape[0], dtype=np.int64)
    for i, row in enumerate(x.astype(np.float64)):
        out[i] = int(np.argmin(((centroids.astype(np.float64) - row) ** 2).sum(1)))
    return out


def _kmeans_pp(x: npt.NDArray[np.float64], k: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """k-means++ seeding: each next centroid drawn with probability proportional to D(x)^2."""
    n = x.shape[0]
    centroids = np.empty((k, x.shape[1]), dtype=np.float64)
    centroids[0] = x[rng.integers(n)]
    best = sq_distances(x, centroids[:1])[:, 0]  # [N]
    for j in range(1, k):
        total = best.sum()
        idx = int(rng.integers(n)) if total <= 0 else int(rng.choice(n, p=best / total))
        centroids[j] = x[idx]
        best = np.minimum(best, sq_distances(x, centroids[j : j + 1])[:, 0])
    return centroids


def kmeans(x: np.ndarray, k: int, *, iters: int = 20, seed: int = 0) -> tuple[F32, I64]:
    """Lloyd's k-means. x [N, d] -> (centroids [k, d] float32, assignment [N]).

    Needs ``k <= N``. Stops early when no assignment changes.
    """
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= number of points, got k={k} for {n} points")
    rng = np.random.default_rng(seed)
    x64 = x.astype(np.float64)
    centroids = _kmeans_pp(x64, k, rng)
    labels = assign(x64, centroids)
    for _ in range(iters):
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, x64)
        counts = np.bincount(labels, minlength=k)
        empty = np.flatnonzero(counts == 0)
        nonempty = counts > 0
        centroids[nonempty] = sums[nonempty] / counts[nonempty, None]
        if len(empty):
            # Re-seed empty clusters at the points farthest from their current centroid.
            far = np.argsort(-((x64 - centroids[labels]) ** 2).sum(1), kind="stable")[: len(empty)]
            centroids[empty] = x64[far]
        new = assign(x64, centroids)
        changed = int((new != labels).sum())
        labels = new
        if changed == 0 and not len(empty):
            break
    return centroids.astype(np.float32), labels
