"""Dense rescoring with the transition prior: against a brute-force full ranking, and across reindexes."""

from __future__ import annotations

import numpy as np
import pytest

from service.core.transitions import PriorShape, TransitionPrior
from service.recommender.markov import ServedPrior

N, D = 30, 8


def make_prior(seed: int = 0, beta: float = 1.0) -> tuple[TransitionPrior, list[str]]:
    rng = np.random.default_rng(seed)
    train = [rng.integers(0, N - 5, size=int(rng.integers(2, 9))).tolist() for _ in range(60)]  # last 5 never seen
    return TransitionPrior.from_sequences(train, N, beta), [f"i{j}" for j in range(N)]


def test_rescore_over_the_whole_catalog_equals_a_full_ranking() -> None:
    prior, ids = make_prior()
    served = ServedPrior(prior, ids, weight=0.7)
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(N, D)).astype(np.float32)  # [N, D]
    for last in range(N):
        user = rng.normal(size=D).astype(np.float32)  # [D]
        full = vectors @ user + 0.7 * prior.log_prob([last])[0]  # [N]
        got = served.rescore(user, vectors, np.arange(N), [ids[last]], "c1", ids, k=10)
        assert [r for r, _ in got] == np.argsort(-full, kind="stable")[:10].tolist()
        np.testing.assert_allclose([s for _, s in got], np.sort(full)[::-1][:10], rtol=1e-5, atol=1e-5)


def test_duplicate_candidates_are_scored_once_and_k_is_respected() -> None:
    prior, ids = make_prior()
    served = ServedPrior(prior, ids, weight=1.0)
    vectors = np.eye(N, D, dtype=np.float32)
    got = served.rescore(np.ones(D, dtype=np.float32), vectors, np.array([3, 3, 4, 4, 5]), [ids[0]], "c", ids, k=10)
    assert sorted(r for r, _ in got) == [3, 4, 5]
    assert (
        served.rescore(np.ones(D, dtype=np.float32), vectors, np.array([], dtype=np.int64), [ids[0]], "c", ids, 5) == []
    )


def test_successors_are_those_counted_in_training() -> None:
    prior = TransitionPrior.from_sequences([[0, 1, 2], [0, 2], [0, 1]], 4, beta=1.0)
    served = ServedPrior(prior, ["a", "b", "c", "d"], weight=1.0)
    assert sorted(served.successor_rows(["a"], "c", ["a", "b", "c", "d"]).tolist()) == [1, 2]
    assert served.successor_rows(["d"], "c", ["a", "b", "c", "d"]).tolist() == []


def test_a_reindexed_catalog_is_aligned_by_id_and_new_items_get_the_zero_count_prior() -> None:
    """After a reindex the served rows differ from the artifact's: items reordered, one removed, new ones
    added. Known items keep their prior; new items get beta * min(pop) / (c(last) + beta)."""
    prior = TransitionPrior.from_sequences([[0, 1, 2], [0, 2], [0, 1], [3, 0]], 4, beta=2.0)
    served = ServedPrior(prior, ["a", "b", "c", "d"], weight=1.0)
    snapshot_ids = ["new1", "c", "a", "new2", "b"]  # "d" was removed
    rows = np.arange(len(snapshot_ids))
    got = served.log_prob_rows(["a"], rows, "items_v2", snapshot_ids)  # [5]
    full = prior.log_prob([0])[0]  # [4] over a, b, c, d
    np.testing.assert_allclose(got[[1, 2, 4]], full[[2, 0, 1]], rtol=1e-6)
    zero_count = np.log(2.0 * prior.pop.min() / (prior.row_totals[0] + 2.0))
    np.testing.assert_allclose(got[[0, 3]], [zero_count, zero_count], rtol=1e-6)
    assert np.isfinite(got).all()
    # Successors map to the new rows; the removed item is not served.
    assert sorted(served.successor_rows(["a"], "items_v2", snapshot_ids).tolist()) == [1, 4]
    assert served.successor_rows(["d"], "items_v2", snapshot_ids).tolist() == [2]
    # The first alignment is not reused for another collection.
    assert served.log_prob_rows(["a"], np.array([0]), "items_v1", ["a", "b", "c", "d"])[0] == pytest.approx(full[0])


def test_mismatched_prior_and_bad_weight_are_refused() -> None:
    prior, ids = make_prior()
    with pytest.raises(ValueError, match="30 items"):
        ServedPrior(prior, ids[:-1], weight=1.0)
    with pytest.raises(ValueError, match="weight"):
        ServedPrior(prior, ids, weight=float("nan"))


def test_a_multi_item_context_mixes_the_recent_known_items() -> None:
    """With ``last`` = 2 the prior conditions on the two most recent history entries that it knows;
    a new item given by text is left out; the zero-count floor of new candidates is mixed alike."""
    shape = PriorShape(last=2, last_decay=0.5)
    prior = TransitionPrior.from_sequences([[0, 1, 2], [0, 2], [0, 1], [3, 0]], 4, beta=2.0, shape=shape)
    served = ServedPrior(prior, ["a", "b", "c", "d"], weight=1.0)
    assert served.context_size == 2
    assert served.context(["x", "a", "d"]) == ["d", "a"]  # newest first, only the last two entries
    assert served.context(["a", None]) == ["a"]  # an item given by text has no counts
    assert served.context(["zzz"]) == [] and served.context([None]) == []
    snapshot_ids = ["new1", "c", "a", "b", "d"]
    got = served.log_prob_rows(["d", "a"], np.arange(5), "items_v2", snapshot_ids)
    full = prior.log_prob_context([[3, 0]])[0]  # [4]
    np.testing.assert_allclose(got[1:], full[[2, 0, 1, 3]], rtol=1e-6)
    p = np.exp(prior.log_prob([3, 0]))  # [2, 4]
    np.testing.assert_allclose(np.exp(full), (p[0] + 0.5 * p[1]) / 1.5, rtol=1e-5)
    floors = [2.0 * prior.pop.min() / (prior.row_totals[a] + 2.0) for a in (3, 0)]
    assert got[0] == pytest.approx(np.log((floors[0] + 0.5 * floors[1]) / 1.5), rel=1e-6)
    assert sorted(served.successor_rows(["d", "a"], "items_v2", snapshot_ids).tolist()) == [1, 2, 3]
    with pytest.raises(ValueError, match="context"):
        served.log_prob_rows([], np.arange(5), "items_v2", snapshot_ids)
