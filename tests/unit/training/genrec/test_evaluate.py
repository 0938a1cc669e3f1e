"""Evaluating the generative recommender with the item -> next item prior beside it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.unit.training.genrec.splits import TINY, cyclic_split, table_for
from training.genrec.fit import train_genrec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_prior_guided_decoding_adds_what_the_counts_know(tmp_path: Path) -> None:
    """A barely trained model ranks next = last + 1 poorly; the item -> next prior counted on the same
    training sequences knows it, and prior-guided decoding (weight picked on validation) scores it."""
    torch.manual_seed(0)
    split = cyclic_split()
    table = table_for(split.n_items)
    cfg = replace(TINY, epochs=1, eval_every=1, prior_weights=[0.5, 4.0])
    res = train_genrec(split, table, cfg, tmp_path / "genrec")
    plain, prior = res.metrics["test"], res.metrics["prior"]
    assert set(prior["val_ndcg@10"]) == {"0.5", "4"} and prior["weight"] in (0.5, 4.0)
    assert prior["test"]["recall@10"] > 0.9 > plain["recall@10"] + 0.3, (plain, prior)
    # the prior by itself knows next = last + 1 exactly (counted on the training sequences), in the
    # full ranking and through the beam
    assert prior["prior_alone_test"]["recall@10"] > 0.9
    assert prior["prior_beam_test"]["recall@10"] > 0.9
    with pytest.raises(ValueError, match="prior_weights must be > 0"):
        train_genrec(split, table, replace(cfg, prior_weights=[0.0]), tmp_path / "bad")
    with pytest.raises(ValueError, match="prior_counts must be one of"):
        train_genrec(split, table, replace(cfg, prior_counts="everything"), tmp_path / "bad")
    assert res.section["prior_weight"] == prior["weight"]  # what serving decodes with
