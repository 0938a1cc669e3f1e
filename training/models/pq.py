"""Product quantization of text vectors (VQ-Rec style item codes).

A vector of dimension T is cut into M sub-vectors of T/M dimensions; each sub-space has
its own codebook of K centroids learned by k-means, and the item's code is the index of
the nearest centroid in every sub-space: ``codes[i] = (c_1, ..., c_M)``, each in [0, K).
Items with text but no interactions get codes the same way, which is what lets a
code-lookup recommender score them.

:func:`kmeans` is plain Lloyd iterations from a k-means++ start (numpy; exact squared
Euclidean distances), with empty clusters re-seeded at the points farthest from their
centroid. :func:`assign_reference` is the slow, obviously-correct assignment the tests
compare the vectorised one against.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

logger = logging.getLogger(__name__)

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


@dataclass
class PQCodebook:
    """M sub-space codebooks. centroids [M, K, T/M]."""

    centroids: F32

    @property
    def m(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def k(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[0] * self.centroids.shape[2])

    def split(self, vectors: np.ndarray) -> F32:
        """[N, T] -> [N, M, T/M]"""
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"vectors must be [N, {self.dim}], got {vectors.shape}")
        return vectors.reshape(vectors.shape[0], self.m, -1).astype(np.float32, copy=False)

    def encode(self, vectors: np.ndarray) -> I64:
        """Code of each vector. [N, T] -> [N, M] int64 in [0, K)."""
        parts = self.split(vectors)  # [N, M, T/M]
        return np.stack([assign(parts[:, j], self.centroids[j]) for j in range(self.m)], axis=1)  # [N, M]

    def decode(self, codes: np.ndarray) -> F32:
        """Reconstruction from codes. [N, M] -> [N, T]"""
        parts = self.centroids[np.arange(self.m)[None, :], codes]  # [N, M, T/M]
        return parts.reshape(codes.shape[0], -1)


def train_pq(
    vectors: np.ndarray, m: int, k: int, *, iters: int = 20, seed: int = 0, progress: bool = False
) -> PQCodebook:
    """Learn M codebooks of K centroids on ``vectors`` [N, T] (T divisible by M).

    K is capped at N (a catalog smaller than K cannot fill K centroids); the cap is logged.
    """
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be [N, T], got shape {vectors.shape}")
    n, t = vectors.shape
    if m < 1 or t % m:
        raise ValueError(f"pq_m={m} must divide the vector dimension {t}")
    if k < 2:
        raise ValueError(f"pq_k must be >= 2, got {k}")
    if k > n:
        logger.warning("pq: K=%d codes per sub-space capped at %d items", k, n)
        k = n
    parts = vectors.reshape(n, m, t // m)  # [N, M, T/M]
    cents = np.zeros((m, k, t // m), dtype=np.float32)
    for j in tqdm(range(m), desc="pq k-means", leave=False, disable=not progress):
        cents[j], _ = kmeans(parts[:, j], k, iters=iters, seed=seed + j)
    return PQCodebook(cents)
