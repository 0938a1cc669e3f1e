"""The one k-means (PQ codebooks and the RQ-VAE initialisation)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.models.kmeans import assign, assign_reference, kmeans, sq_distances


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 8), d=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_vectorised_assignment_matches_the_reference(n: int, k: int, d: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    c = rng.normal(size=(k, d)).astype(np.float32)
    got = assign(x, c, chunk=7)  # chunking must not change anything
    ref = assign_reference(x, c)
    # Equal, or an exact tie in distance (argmin picks the lowest index in both).
    dist = sq_distances(x, c)
    rows = np.arange(n)
    np.testing.assert_allclose(dist[rows, got], dist[rows, ref], rtol=1e-9, atol=1e-9)


def test_sq_distances_are_exact_and_non_negative() -> None:
    x = np.array([[0.0, 0.0], [1.0, 1.0]])
    c = np.array([[0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_allclose(sq_distances(x, c), [[0.0, 25.0], [2.0, 13.0]])
    assert (sq_distances(x, x) >= 0).all()


def test_kmeans_recovers_well_separated_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels_true = rng.integers(0, 3, size=300)
    x = centres[labels_true] + rng.normal(scale=0.1, size=(300, 2))
    cents, labels = kmeans(x, 3, seed=1)
    assert cents.shape == (3, 2) and labels.shape == (300,)
    # Same partition up to renaming, and centroids at the true centres.
    for j in range(3):
        members = labels[labels_true == j]
        assert (members == members[0]).all()
    assert (sq_distances(centres, cents).min(axis=1) < 0.01).all()


def test_kmeans_fills_every_cluster_even_with_duplicate_points() -> None:
    x = np.repeat(np.arange(5, dtype=np.float64)[:, None], 4, axis=0)  # 5 distinct values, 4 copies each
    _, labels = kmeans(x, 5, seed=0)
    assert len(np.unique(labels)) == 5


def test_kmeans_rejects_more_clusters_than_points() -> None:
    with pytest.raises(ValueError, match="k <= number of points"):
        kmeans(np.zeros((3, 2)), 4)
