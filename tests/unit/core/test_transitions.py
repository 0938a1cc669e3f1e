from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.core.transitions import PriorShape, TransitionPrior, transition_counts


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
    assert back.beta == 0.5 and back.shape == PriorShape()
    shape = PriorShape(window=2, decay=0.5, backward=0.5, last=2, last_decay=0.5)
    wide = TransitionPrior.from_sequences([[0, 1, 2], [1, 2, 0]], n_items=3, beta=0.5, shape=shape)
    back = TransitionPrior.load(wide.save(tmp_path / "wide.npz"))
    assert back.shape == shape
    np.testing.assert_array_equal(back.history_log_prob([[0, 1], [2]]), wide.history_log_prob([[0, 1], [2]]))
    # a file written before the shape existed reads as the first-order prior
    np.savez(tmp_path / "old.npz", indptr=prior.indptr, cols=prior.cols, counts=prior.counts, pop=prior.pop, beta=0.5)
    assert TransitionPrior.load(tmp_path / "old.npz").shape == PriorShape()


def test_window_counts_weigh_pairs_by_distance_and_direction() -> None:
    shape = PriorShape(window=2, decay=0.5, backward=0.25)
    indptr, cols, counts = transition_counts([[0, 1, 2]], n_items=3, shape=shape)
    pairs = {(a, int(cols[k])): counts[k] for a in range(3) for k in range(indptr[a], indptr[a + 1])}
    # forward: 0->1, 1->2 (1.0), 0->2 (0.5); backward x 0.25: 1->0, 2->1 (0.25), 2->0 (0.125)
    assert pairs == {(0, 1): 1.0, (1, 2): 1.0, (0, 2): 0.5, (1, 0): 0.25, (2, 1): 0.25, (2, 0): 0.125}
    with pytest.raises(ValueError, match="window"):
        PriorShape(window=0)
    with pytest.raises(ValueError, match="decay"):
        PriorShape(decay=0.0)
    with pytest.raises(ValueError, match="backward"):
        PriorShape(backward=2.0)


def test_history_prior_mixes_the_last_items_with_decaying_weights() -> None:
    train = [[0, 1, 2, 3], [3, 0, 4], [1, 4]]
    first = TransitionPrior.from_sequences(train, n_items=5, beta=1.0)
    # first-order: the history prior is the last item's
    np.testing.assert_allclose(first.history_log_prob([[2, 1], [0]]), first.log_prob([1, 0]), rtol=1e-5)
    mix = TransitionPrior.from_sequences(train, n_items=5, beta=1.0, shape=PriorShape(last=2, last_decay=0.5))
    got = np.exp(mix.history_log_prob([[2, 1], [0]]))
    p = np.exp(first.log_prob([1, 2, 0]))
    np.testing.assert_allclose(got[0], (p[0] + 0.5 * p[1]) / 1.5, rtol=1e-5)  # newest first
    np.testing.assert_allclose(got[1], p[2], rtol=1e-5)  # one item: nothing to mix
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    assert mix.context([4, 2, 1]) == [1, 2]
    assert mix.successors_of([1, 0]).tolist() == [1, 2, 4]
    with pytest.raises(ValueError, match="empty"):
        mix.log_prob_context([[]])
