"""Generative training data: examples of every position, batches (item-ID dropout), the prior's logit bias."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from service.core.transitions import TransitionPrior
from service.semantic_ids.decoder import with_item_ids
from service.semantic_ids.prefix_index import PrefixIndex
from tests.unit.training.genrec.splits import TINY, cyclic_split, table_for
from training.genrec.data import GenRecBatches, PriorBias, training_examples
from training.models.genrec import build_genrec, genrec_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_training_examples_cover_every_position() -> None:
    hist, targets, seqs = training_examples([[1, 2, 3], [4], [5, 6]], max_items=1)
    assert [h.tolist() for h in hist] == [[1], [2], [5]]
    assert targets.tolist() == [2, 3, 6]
    assert seqs.tolist() == [0, 0, 2]  # each example's training sequence (user)


def test_item_dropout_removes_ids_from_history_positions() -> None:
    split = cyclic_split()
    table = table_for(split.n_items)
    tokens = table.tokens()
    cfg = replace(TINY, history_input="items", item_id_input=True, item_dropout=0.3, batch_size=64)
    batches = GenRecBatches(
        tokens, split.train, cfg, torch.device("cpu"), history_table=with_item_ids(tokens, np.arange(split.n_items))
    )
    kept = dropped = 0
    for b in batches.epoch(1):
        assert b.input_ids.shape[2] == tokens.shape[1] + 1 and b.labels.shape[1] == tokens.shape[1]
        items = (b.input_ids[..., 0] >= 2) & (b.attention_mask > 0)  # item positions (not EOS / padding)
        col = b.input_ids[..., -1][items]
        dropped += int((col == 0).sum())
        kept += int((col > 0).sum())
    assert 0.2 < dropped / (kept + dropped) < 0.4


def test_prior_bias_is_weighted_log_mass_of_valid_children_with_the_transition_left_out() -> None:
    split = cyclic_split()
    table = table_for(split.n_items)
    index = PrefixIndex(table.sids, table.layout)
    prior = TransitionPrior.from_sequences(split.train, split.n_items, beta=0.5)
    vocab = table.layout.vocab_size
    bias = PriorBias(prior, index, vocab, weight=2.0)
    last, targets = np.array([3, 7, 7]), np.array([4, 8, 9])
    got = bias(last, targets).numpy()  # [3, depth, V]
    lp = prior.log_prob(last, leave_out=targets).astype(np.float64)  # [3, N]
    sids = table.sids
    for r in range(3):
        t = sids[targets[r]]
        for level in range(table.layout.depth):
            under = (sids[:, :level] == t[:level]).all(axis=1)  # items under the target's prefix
            off = table.layout.level_offset(level)
            for tok in range(vocab):
                code = tok - off
                child = under & (sids[:, level] == code) if 0 <= code < table.layout.level_size(level) else None
                if child is None or not child.any():
                    assert got[r, level, tok] == -np.inf
                else:
                    want = 2.0 * np.log(np.exp(lp[r, child]).sum())
                    assert got[r, level, tok] == pytest.approx(want, abs=1e-4)
        assert np.isfinite(got[r, np.arange(table.layout.depth), table.tokens()[targets[r]]]).all()


def test_leave_one_out_prior_drops_the_predicted_transition() -> None:
    prior = TransitionPrior.from_sequences([[0, 1, 2], [0, 1], [0, 2]], 3, beta=1.0)
    full = np.exp(prior.log_prob([0, 0]))
    loo = np.exp(prior.log_prob([0, 0], leave_out=[1, 0]))  # (0, 1) counted twice; (0, 0) never
    pop = prior.pop.astype(np.float64)
    np.testing.assert_allclose(full[0], (np.array([0, 2, 1]) + pop) / 4, rtol=1e-5)
    np.testing.assert_allclose(loo[0], (np.array([0, 1, 1]) + pop) / 3, rtol=1e-5)
    np.testing.assert_allclose(loo[1], full[1], rtol=1e-6)  # nothing to leave out
    with pytest.raises(ValueError, match="leave_out"):
        prior.log_prob([0], leave_out=[0, 1])


def test_loss_with_prior_bias_is_cross_entropy_of_the_product_over_valid_codes() -> None:
    split = cyclic_split()
    table = table_for(split.n_items)
    cfg = replace(TINY, prior_train_weight=1.5)
    model = build_genrec(table.layout, cfg, seed=0)
    index = PrefixIndex(table.sids, table.layout)
    prior = TransitionPrior.from_sequences(split.train, split.n_items, cfg.prior_beta)
    batches = GenRecBatches(
        table.tokens(),
        split.train,
        cfg,
        torch.device("cpu"),
        prior_bias=PriorBias(prior, index, table.layout.vocab_size, 1.5),
    )
    batch = next(iter(batches.epoch(0)))
    assert batch.logit_bias is not None
    model.eval()
    with torch.no_grad():
        loss = float(genrec_loss(model, batch))
        logits = model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels
        ).logits.double()
        plain = float(genrec_loss(model, batch._replace(logit_bias=None)))
    logq = torch.log_softmax(logits + batch.logit_bias.double(), dim=-1)  # -inf bias: excluded codes
    want = -logq.gather(2, batch.labels[:, :, None]).mean()
    assert loss == pytest.approx(float(want), abs=1e-4)
    assert loss != pytest.approx(plain, abs=1e-3)
