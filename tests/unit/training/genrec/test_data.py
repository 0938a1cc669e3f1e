"""Generative training data: examples of every position, batches (item-ID dropout)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from service.semantic_ids.decoder import with_item_ids
from tests.unit.training.genrec.splits import TINY, cyclic_split, table_for
from training.genrec.data import GenRecBatches, training_examples

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
