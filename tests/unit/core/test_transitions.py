from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.core.transitions import TransitionPrior, transition_counts


def test_transition_counts_are_csr_over_the_previous_item() -> None:
    indptr, cols, counts = transition_counts([[0, 1, 2, 1, 2], [2, 0], [3]], n_items=4)
    pairs = {(a, int(cols[k])): counts[k] for a in range(4) for k in range(indptr[a], indptr[a + 1])}
    assert pairs == {(0, 1): 1.0, (1, 2): 2.0, (2, 1): 1.0, (2, 0): 1.0}
    with pytest.raises(ValueError, match="outside"):
        transition_counts([[0, 5]], n_items=4)


def test_log_prob_is_a_smoothed_distribution_over_all_items() -> None:
    train = [[0, 1, 2, 1, 2], [2, 0], [3, 3]]
    prior = TransitionPrior.from_sequences(train, n_items=5, beta=2.0)
    lp = prior.log_prob([1, 2, 4])  # item 4 never seen: popularity only
    assert lp.shape == (3, 5) and lp.dtype == np.float32
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, rtol=1e-5)
    # 1 -> 2 twice, nothing else: p(2 | 1) = (2 + 2 pop_2) / (2 + 2)
    assert np.exp(lp[0, 2]) == pytest.approx((2 + 2 * prior.pop[2]) / 4, rel=1e-5)
    assert np.argmax(lp[1]) in (0, 1)  # 2 -> 1 and 2 -> 0 once each
    np.testing.assert_allclose(np.exp(lp[2]), prior.pop, rtol=1e-5)
    assert sorted(prior.successors(2).tolist()) == [0, 1]
    with pytest.raises(ValueError, match="item indices"):
        prior.log_prob([5])


def test_save_load_round_trip(tmp_path: Path) -> None:
    prior = TransitionPrior.from_sequences([[0, 1, 2], [1, 2, 0]], n_items=3, beta=0.5)
    back = TransitionPrior.load(prior.save(tmp_path / "prior.npz"))
    np.testing.assert_array_equal(back.log_prob([0, 1, 2]), prior.log_prob([0, 1, 2]))
    assert back.beta == 0.5
