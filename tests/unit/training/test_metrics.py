from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from training.metrics import (
    PopularityModel,
    evaluate,
    metrics_from_ranks,
    ndcg_at_k,
    recall_at_k,
    target_ranks,
)


@dataclass(frozen=True)
class C:
    history: tuple[int, ...]
    target: int


def test_ranks_count_strictly_greater_scores_so_ties_favour_the_target() -> None:
    scores = np.array(
        [
            [0.1, 0.9, 0.5, 0.3],  # target 1 is top -> rank 0
            [0.1, 0.9, 0.5, 0.3],  # target 0 is last -> rank 3
            [0.5, 0.5, 0.5, 0.2],  # target 2 tied with two others -> rank 0
            [0.7, 0.5, 0.5, 0.9],  # target 1 tied with item 2, below 0 and 3 -> rank 2
        ]
    )
    targets = np.array([1, 0, 2, 1])
    assert target_ranks(scores, targets).tolist() == [0, 3, 0, 2]
    # Same answer from torch tensors.
    assert target_ranks(torch.tensor(scores), torch.tensor(targets)).tolist() == [0, 3, 0, 2]


def test_recall_and_ndcg_hand_computed() -> None:
    ranks = np.array([0, 3, 0, 2, 7, 12])
    assert recall_at_k(ranks, 1) == pytest.approx(2 / 6)
    assert recall_at_k(ranks, 5) == pytest.approx(4 / 6)
    assert recall_at_k(ranks, 10) == pytest.approx(5 / 6)
    # gains: rank 0 -> 1, rank 3 -> 1/log2(5), rank 2 -> 1/log2(4) = 0.5, rank 7 -> 1/log2(9)
    expected5 = (1 + 1 / math.log2(5) + 1 + 0.5) / 6
    expected10 = (1 + 1 / math.log2(5) + 1 + 0.5 + 1 / math.log2(9)) / 6
    assert ndcg_at_k(ranks, 5) == pytest.approx(expected5)
    assert ndcg_at_k(ranks, 10) == pytest.approx(expected10)
    m = metrics_from_ranks(ranks)
    assert set(m) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
    assert m["ndcg@10"] == pytest.approx(expected10)


def test_nan_scores_are_an_error_not_a_perfect_rank() -> None:
    scores = np.array([[np.nan, 0.2, 0.3]])
    with pytest.raises(ValueError, match="NaN"):
        target_ranks(scores, np.array([0]))
    with pytest.raises(ValueError, match="NaN"):
        target_ranks(torch.tensor(scores), torch.tensor([0]))


def test_evaluate_batches_and_matches_direct_computation() -> None:
    rng = np.random.default_rng(0)
    table = rng.normal(size=(50, 20))  # a fixed score per (user, item)
    cases = [C(history=(u,), target=int(rng.integers(20))) for u in range(50)]

    def score(batch: Sequence[C]) -> np.ndarray:
        return table[[c.history[0] for c in batch]]

    direct = metrics_from_ranks(target_ranks(table, np.array([c.target for c in cases])))
    for bs in (1, 7, 256):
        assert evaluate(score, cases, batch_size=bs) == pytest.approx(direct)
    assert set(evaluate(score, cases, ks=(1, 3))) == {"recall@1", "recall@3", "ndcg@1", "ndcg@3"}
    with pytest.raises(ValueError):
        evaluate(score, [])


def test_popularity_ranks_by_count_and_breaks_ties_by_index() -> None:
    counts = np.array([5, 0, 9, 5, 1])
    pop = PopularityModel(counts)
    assert pop.top(5).tolist() == [2, 0, 3, 4, 1]
    cases = [C((0,), 2), C((1,), 0), C((2,), 3), C((3,), 1)]
    scores = pop(cases)
    assert scores.shape == (4, 5)
    # Item 3 ties item 0 on count but ranks after it: no tie credit for the baseline.
    assert target_ranks(scores, np.array([c.target for c in cases])).tolist() == [0, 1, 2, 4]
    m = evaluate(pop, cases, ks=(1, 2))
    assert m["recall@1"] == pytest.approx(0.25)
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["ndcg@2"] == pytest.approx((1 + 1 / math.log2(3)) / 4)
