"""The hybrid merge (service/recommender/hybrid.py): pool, dense score, prior term, beam bonus."""

from __future__ import annotations

import numpy as np
import pytest

from service.recommender.hybrid import HybridWeights, merge_and_rescore

# Item vectors on one axis: the dense score of row r is VECTORS[r] . USER = 10 - r.
VECTORS = np.array([[10.0 - r] for r in range(10)], dtype=np.float32)  # [10, 1]
USER = np.array([1.0], dtype=np.float32)


def rows_of(scored: list[tuple[int, float]]) -> list[int]:
    return [r for r, _ in scored]


def test_without_weights_the_dense_score_orders_the_union() -> None:
    scored = merge_and_rescore([3, 5], [1, -1, 5, 8], VECTORS, USER, 4, generative_scores=[-1.0, -np.inf, -2.0, -3.0])
    assert rows_of(scored) == [1, 3, 5, 8]  # beam item 1 enters the pool and wins on its dense score
    assert [s for _, s in scored] == [9.0, 7.0, 5.0, 2.0]
    assert merge_and_rescore([], [-1], VECTORS, USER, 3) == []


def test_beam_bonus_is_the_score_above_the_requests_lowest() -> None:
    w = HybridWeights(generative=2.0)
    scored = merge_and_rescore([3], [8, 9], VECTORS, USER, 3, generative_scores=[-1.0, -4.0], weights=w)
    # 8: 2 + 2 * (-1 - -4) = 8; 3: 7 (not in the beam, no bonus); 9: 1 + 0 (the beam's lowest)
    assert scored == [(8, 8.0), (3, 7.0), (9, 1.0)]
    with pytest.raises(ValueError, match="beam scores"):
        merge_and_rescore([3], [8, 9], VECTORS, USER, 3, generative_scores=[-1.0], weights=w)


def test_prior_term_and_its_extra_candidates() -> None:
    log_p = np.full(10, -10.0, dtype=np.float32)
    log_p[9] = -1.0  # the prior's favourite, in neither candidate list

    def prior(rows: np.ndarray) -> np.ndarray:
        return log_p[rows]

    w = HybridWeights(prior=1.0)
    scored = merge_and_rescore([0, 1], [2], VECTORS, USER, 2, extra_rows=[9], log_prior=prior, weights=w)
    assert scored == [(0, 0.0), (9, 0.0)]  # 9: 1 - 1; 0: 10 - 10; ties keep the dense candidate first
    assert rows_of(merge_and_rescore([0, 1], [2], VECTORS, USER, 2, extra_rows=[9], log_prior=prior)) == [0, 1]


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_weights_must_be_finite_and_non_negative(bad: float) -> None:
    with pytest.raises(ValueError, match="hybrid"):
        HybridWeights(prior=bad)
    with pytest.raises(ValueError, match="hybrid"):
        HybridWeights(generative=bad)
