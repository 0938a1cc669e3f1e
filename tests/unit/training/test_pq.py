from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.models.pq import PQCodebook, assign, assign_reference, kmeans, sq_distances, train_pq


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


def test_pq_codes_shape_range_and_reconstruction() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 12)).astype(np.float32)
    book = train_pq(x, m=4, k=16, seed=0)
    assert isinstance(book, PQCodebook)
    assert (book.m, book.k, book.dim) == (4, 16, 12)
    codes = book.encode(x)
    assert codes.shape == (200, 4) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < 16
    err = float(((book.decode(codes) - x) ** 2).sum(1).mean())
    # Nearest centroid beats any other code choice, e.g. a random one, by construction.
    random_codes = rng.integers(0, 16, size=codes.shape)
    err_random = float(((book.decode(random_codes) - x) ** 2).sum(1).mean())
    assert err < 0.6 * err_random
    # More codes per sub-space -> a finer quantizer.
    finer = train_pq(x, m=4, k=64, seed=0)
    assert float(((finer.decode(finer.encode(x)) - x) ** 2).sum(1).mean()) < err


def test_pq_is_exact_when_each_subspace_has_at_most_k_distinct_parts() -> None:
    rng = np.random.default_rng(1)
    parts = rng.normal(size=(3, 8, 2)).astype(np.float32)  # per sub-space 8 possible 2-d parts
    choice = rng.integers(0, 8, size=(100, 3))
    x = np.concatenate([parts[j][choice[:, j]] for j in range(3)], axis=1)  # [100, 6]
    book = train_pq(x, m=3, k=8, seed=0, iters=50)
    np.testing.assert_allclose(book.decode(book.encode(x)), x, atol=1e-5)


def test_pq_argument_errors_and_k_cap() -> None:
    x = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
    with pytest.raises(ValueError, match="must divide"):
        train_pq(x, m=4, k=4)
    with pytest.raises(ValueError, match=">= 2"):
        train_pq(x, m=3, k=1)
    book = train_pq(x, m=3, k=256)  # only 10 items: K capped at 10
    assert book.k == 10
    with pytest.raises(ValueError, match=r"\[N, 6\]"):
        book.encode(np.zeros((2, 5), dtype=np.float32))
