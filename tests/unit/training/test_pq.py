from __future__ import annotations

import numpy as np
import pytest

from training.models.pq import PQCodebook, train_pq


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
