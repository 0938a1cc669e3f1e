"""GenRecT5: the optional item-ID table is created from the config, saved and loaded with the model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from service.core.sid import SidLayout
from service.semantic_ids.decoder import load_genrec
from service.semantic_ids.model import GenRecT5
from training.config import GenRecConfig
from training.models.genrec import build_genrec, genrec_t5_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LAYOUT = SidLayout(2, 4, 4)
SMALL = GenRecConfig(d_model=16, d_ff=32, n_heads=2, d_kv=8, history_input="items", item_id_input=False)


def test_item_id_table_round_trips(tmp_path: Path) -> None:
    model = build_genrec(LAYOUT, replace(SMALL, item_id_input=True), seed=0, n_items=7)
    table = model.item_id_embedding
    assert table is not None and tuple(table.weight.shape) == (8, 16)
    w = table.weight.detach()
    assert float(w[0].abs().sum()) == 0.0  # row 0 = no ID: zeros
    assert float(w[1:].std()) > 0.5  # T5's embedding scale, not HF's small default
    model.save_pretrained(str(tmp_path))
    loaded = load_genrec(tmp_path)
    assert isinstance(loaded, GenRecT5) and loaded.item_id_embedding is not None
    torch.testing.assert_close(loaded.item_id_embedding.weight.detach(), w)


def test_model_without_ids_has_no_table(tmp_path: Path) -> None:
    model = build_genrec(LAYOUT, SMALL, seed=0)
    assert model.item_id_embedding is None
    model.save_pretrained(str(tmp_path))
    assert load_genrec(tmp_path).item_id_embedding is None
    config = genrec_t5_config(LAYOUT, SMALL)
    config.item_id_embeddings = -1
    with pytest.raises(ValueError, match="item_id_embeddings"):
        GenRecT5(config)
