"""Evaluation protocols: items hidden from training, histories cut short."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.training.evaluation.splits import random_split
from training.evaluation.protocols import hide_items


def test_hide_items_removes_cold_items_from_training_only() -> None:
    split = random_split()
    warm, cold = hide_items(split, 0.2, seed=3)
    assert cold.shape == (50,) and cold.sum() == 10
    assert not any(cold[i] for s in warm.train for i in s)
    assert all(not cold[c.target] for c in warm.val)
    assert warm.test == split.test  # every test case is kept; cold targets are scored by text
    # Only the cold items were dropped from the training sequences.
    for before, after in zip(split.train, warm.train, strict=True):
        assert after == [i for i in before if not cold[i]]
    _, cold2 = hide_items(split, 0.2, seed=3)
    np.testing.assert_array_equal(cold, cold2)  # seeded
    assert not np.array_equal(cold, hide_items(split, 0.2, seed=4)[1])
    with pytest.raises(ValueError, match="cold_frac"):
        hide_items(split, 0.0, seed=0)
