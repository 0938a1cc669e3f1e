"""Product quantization of text vectors (VQ-Rec style item codes).

A vector of dimension T is cut into M sub-vectors of T/M dimensions; each sub-space has
its own codebook of K centroids learned by k-means, and the item's code is the index of
the nearest centroid in every sub-space: ``codes[i] = (c_1, ..., c_M)``, each in [0, K).
Items with text but no interactions get codes the same way, which is what lets a
code-lookup recommender score them.

The codebooks come from the one k-means of the project (:mod:`training.models.kmeans`,
which the RQ-VAE initialisation uses too).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from training.models.kmeans import assign, kmeans

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


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
