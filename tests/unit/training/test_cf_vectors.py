"""Co-occurrence (PPMI-SVD) item vectors from training sequences."""

from __future__ import annotations

import numpy as np
import pytest

from training.semantic_ids.cf_vectors import cooccurrence_pairs, cooccurrence_vectors


def test_pairs_within_the_window_both_ways() -> None:
    r, c = cooccurrence_pairs([[0, 1, 2], [3], [4, 4, 5]], window=1)
    pairs = sorted(zip(r.tolist(), c.tolist(), strict=True))
    assert pairs == [(0, 1), (1, 0), (1, 2), (2, 1), (4, 5), (5, 4)]  # no (4, 4): self pairs dropped
    r, _ = cooccurrence_pairs([[0, 1, 2]], window=2)
    assert len(r) == 6  # gaps 1 and 2
    with pytest.raises(ValueError, match="window"):
        cooccurrence_pairs([[0, 1]], window=0)


def test_vectors_separate_communities() -> None:
    """Users take items from one of two disjoint groups: co-occurrence puts each group together."""
    rng = np.random.default_rng(0)
    groups = [np.arange(0, 20), np.arange(20, 40)]
    seqs = [rng.choice(groups[u % 2], 6, replace=False).tolist() for u in range(400)]
    vec = cooccurrence_vectors(seqs, 41, dim=4, window=3)  # item 40 never occurs
    assert vec.shape == (41, 4) and vec.dtype == np.float32
    assert np.allclose(np.linalg.norm(vec[:40], axis=1), 1.0, atol=1e-5)
    assert not vec[40].any()  # no co-occurrence: zero row
    sim = vec[:40] @ vec[:40].T
    same = np.equal.outer(np.arange(40) < 20, np.arange(40) < 20)
    assert sim[same].mean() > sim[~same].mean() + 0.5
    with pytest.raises(ValueError, match="below the number of items"):
        cooccurrence_vectors(seqs, 41, dim=41)
    with pytest.raises(ValueError, match="no item pairs"):
        cooccurrence_vectors([[1], [2]], 5, dim=2)
