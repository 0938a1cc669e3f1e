"""Full-ranking ranks with and without the item -> next item prior, and the "+mc" evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from service.core.transitions import PriorShape, TransitionPrior
from service.encoding.fake import FakeEncoder
from tests.unit.training.evaluation.splits import random_split
from training.config import SeqRecConfig
from training.data.split import known_sequences
from training.evaluation.prior import markov_eval, model_ranks, prior_ranks
from training.metrics import metrics_from_ranks, target_ranks
from training.seqrec.fit import evaluate_model
from training.seqrec.model import build_model


@pytest.mark.parametrize("with_profile", [False, True])
def test_model_ranks_agree_with_evaluate_model(with_profile: bool) -> None:
    split = random_split(n_items=40, n_users=60)
    text = FakeEncoder(dim=16).encode([f"item {i}" for i in range(40)]).astype(np.float32)
    profiles = np.random.default_rng(0).normal(size=(60, 5)).astype(np.float32) if with_profile else None
    cfg = SeqRecConfig(hidden=8, n_layers=1, max_len=5)
    model = build_model(cfg, 40, text, profile_dim=0 if profiles is None else 5).eval()
    ranks = model_ranks(model, split.test, profiles=profiles, batch_size=7)
    assert ranks.shape == (len(split.test),)
    assert metrics_from_ranks(ranks) == pytest.approx(evaluate_model(model, split.test, profiles=profiles))


@pytest.mark.parametrize("shape", [PriorShape(), PriorShape(window=3, decay=0.5, backward=0.5, last=3, last_decay=0.5)])
def test_prior_ranks_interpolate_between_model_and_transition_prior(shape: PriorShape) -> None:
    split = random_split(n_items=40, n_users=60)
    cfg = SeqRecConfig(hidden=8, n_layers=1, max_len=5, use_text=False)
    model = build_model(cfg, 40, None).eval()
    prior = TransitionPrior.from_sequences(split.train, 40, beta=1.0, shape=shape)
    ranks = prior_ranks(model, split.test, prior, [1e-6, 1e6], batch_size=7)  # [2, n]
    assert ranks.shape == (2, len(split.test))
    # a vanishing weight is the model alone; an overwhelming one ranks by the prior (ties aside)
    np.testing.assert_array_equal(ranks[0], model_ranks(model, split.test))
    lp = prior.log_prob_context([c.history[::-1][: shape.last] for c in split.test])  # [n, N]
    targets = np.array([c.target for c in split.test])
    above = target_ranks(lp, targets)  # items the prior puts strictly above the target
    tied = (lp == lp[np.arange(len(targets)), targets][:, None]).sum(axis=1) - 1  # model breaks these ties
    assert np.all(ranks[1] >= above) and np.all(ranks[1] <= above + tied)
    assert np.any(ranks[1] != ranks[0])


def test_markov_eval_picks_the_prior_shape_and_weight_on_validation() -> None:
    split = random_split(n_items=40, n_users=60)
    model = build_model(SeqRecConfig(hidden=8, n_layers=1, max_len=5, use_text=False), 40, None).eval()
    shapes = [PriorShape(), PriorShape(window=3, decay=0.5, backward=0.5, last=2, last_decay=0.5)]
    out = markov_eval(model, split, [0.5, 2.0], 1.0, shapes=shapes)
    assert set(out["val_by_shape"]) == {"first-order", shapes[1].label}
    assert out["val"]["ndcg@10"] == pytest.approx(max(out["val_by_shape"].values()))
    chosen = PriorShape.from_dict(out["shape"])
    assert chosen in shapes and out["val_by_shape"][chosen.label] == max(out["val_by_weight"].values())
    # the test figure is that of the chosen (shape, weight)
    prior = TransitionPrior.from_sequences(split.train, 40, 1.0, chosen)
    ref = metrics_from_ranks(prior_ranks(model, split.test, prior, [out["weight"]])[0])
    assert out["test"] == ref
    with pytest.raises(ValueError, match="prior shape"):
        markov_eval(model, split, [0.5], 1.0, shapes=[])


def test_known_sequences_add_each_test_users_validation_item_and_never_a_target() -> None:
    split = random_split(n_items=40, n_users=60)
    assert known_sequences(split, split.val) == split.train
    known = known_sequences(split, split.test)
    for c_val, c_test in zip(split.val, split.test, strict=True):
        assert known[c_test.user] == split.train[c_test.user] + [c_val.target] == list(c_test.history)
    assert split.train[0] != known[0]  # the split itself is left as it was


def test_prior_counts_histories_count_the_validation_items_for_test_only() -> None:
    split = random_split(n_items=40, n_users=60)
    model = build_model(SeqRecConfig(hidden=8, n_layers=1, max_len=5, use_text=False), 40, None).eval()
    plain = markov_eval(model, split, [0.5, 2.0], 1.0)
    known = markov_eval(model, split, [0.5, 2.0], 1.0, counts="histories")
    assert (plain["counts"], known["counts"]) == ("train", "histories")
    # validation counts the training sequences either way, so the same weight is picked on the same figures
    assert known["val"] == plain["val"] and known["weight"] == plain["weight"]
    prior = TransitionPrior.from_sequences(known_sequences(split, split.test), 40, 1.0, PriorShape())
    assert known["test"] == metrics_from_ranks(prior_ranks(model, split.test, prior, [known["weight"]])[0])
    assert known["test"] != plain["test"]
    with pytest.raises(ValueError, match="prior_counts"):
        markov_eval(model, split, [0.5], 1.0, counts="everything")
