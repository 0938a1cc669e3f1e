"""Fitting the generative recommender: schedules, item-ID starts, what it learns and how it round-trips
through save/load."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from service.semantic_ids.decoder import history_input as history_input_of
from service.semantic_ids.decoder import item_id_embeddings, load_genrec, with_item_ids
from service.semantic_ids.prefix_index import PrefixIndex
from tests.unit.training.genrec.splits import TINY, cyclic_split, table_for
from training.genrec.decode import decode_top
from training.genrec.evaluate import evaluate_generative
from training.genrec.fit import item_id_init_rows, lr_at, train_genrec
from training.genrec.results import model_name

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["tokens", "items", "items+ids"])
def test_genrec_learns_a_deterministic_pattern_and_round_trips(tmp_path: Path, encoder: str) -> None:
    torch.manual_seed(0)
    split = cyclic_split()
    table = table_for(split.n_items)
    history_input, ids = encoder.split("+")[0], encoder.endswith("+ids")
    cfg = replace(TINY, history_input=history_input, item_id_input=ids)
    res = train_genrec(split, table, cfg, tmp_path / "genrec")
    test = res.metrics["test"]
    assert set(test) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
    # next = last + 1 is learnable: far above chance (10 of 40 items in the list)
    assert test["recall@10"] > 0.6, test
    model = load_genrec(tmp_path / "genrec")
    assert history_input_of(model) == history_input  # the saved config says how to encode histories
    index = PrefixIndex(table.sids, table.layout)
    rows = table.tokens()
    if ids:  # the ID vectors were saved and loaded; the encoder rows carry the ID column
        assert item_id_embeddings(model) == split.n_items
        rows = with_item_ids(rows, np.arange(split.n_items))
        with pytest.raises(ValueError, match="columns"):
            decode_top(model, table.tokens(), index, [[3]], cfg, k=5)
    again = evaluate_generative(model, rows, index, split.test, cfg)
    assert again == test
    top = decode_top(model, rows, index, [[3, 4, 5]], cfg, k=5)
    assert top.shape == (1, 5) and ((top >= 0) & (top < split.n_items)).all()


def test_inverse_sqrt_schedule_warms_up_then_decays() -> None:
    cfg = replace(TINY, lr=1e-3, lr_schedule="inverse_sqrt", warmup_steps=100)
    assert lr_at(0, cfg) == pytest.approx(1e-5)
    assert lr_at(49, cfg) == pytest.approx(5e-4)
    assert lr_at(99, cfg) == pytest.approx(1e-3)  # peak at the end of warmup
    assert lr_at(399, cfg) == pytest.approx(5e-4)  # sqrt(100 / 400)
    assert lr_at(10_000, replace(TINY, lr=1e-3)) == 1e-3  # constant
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_at(0, replace(TINY, lr_schedule="linear"))


def test_cosine_schedule_warms_up_then_decays_to_zero_at_the_end() -> None:
    cfg = replace(TINY, lr=1e-3, lr_schedule="cosine", warmup_steps=100)
    assert lr_at(0, cfg, 1100) == pytest.approx(1e-5)
    assert lr_at(99, cfg, 1100) == pytest.approx(1e-3)  # peak at the end of warmup
    assert lr_at(599, cfg, 1100) == pytest.approx(5e-4)  # half way through the decay: cos(pi / 2)
    assert lr_at(1099, cfg, 1100) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(5000, cfg, 1100) == pytest.approx(0.0, abs=1e-12)  # past the end it stays at 0
    lrs = [lr_at(s, cfg, 1100) for s in range(99, 1100)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))
    with pytest.raises(ValueError, match="total steps"):
        lr_at(200, cfg)


def test_cosine_training_ends_at_zero_lr(tmp_path: Path) -> None:
    split = cyclic_split()
    cfg = replace(TINY, epochs=2, eval_every=1, lr=1e-3, lr_schedule="cosine", warmup_steps=2)
    res = train_genrec(split, table_for(split.n_items), cfg, tmp_path / "genrec")
    assert res.fit.epochs == 2 and res.fit.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert "cosine to 0 over 2 epochs (warmup 2)" in model_name(cfg)


def test_item_id_init_rows_keep_the_vectors_geometry() -> None:
    rng = np.random.default_rng(0)
    low_rank = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 40))  # 5 directions of 40 dims
    rows = item_id_init_rows(low_rank + 3.0, dim=8, std=1.0)
    assert rows.shape == (200, 8) and rows.dtype == np.float32
    assert rows.std() == pytest.approx(1.0, rel=1e-5)
    assert np.abs(rows[:, 5:]).max() < 1e-4  # nothing beyond the data's 5 directions
    # Distances are those of the centred vectors, up to the one scale: neighbours stay neighbours.
    d_in = np.linalg.norm(low_rank[:, None] - low_rank[None], axis=-1)
    d_out = np.linalg.norm(rows[:, None].astype(np.float64) - rows[None], axis=-1)
    ratio = d_out[d_in > 0] / d_in[d_in > 0]
    assert ratio.max() == pytest.approx(ratio.min(), rel=1e-4)
    few = item_id_init_rows(rng.normal(size=(50, 3)), dim=8, std=0.5)  # fewer features than dims
    assert few.shape == (50, 8) and np.abs(few[:, 3:]).max() == 0 and few.std() == pytest.approx(0.5, rel=1e-5)
    with pytest.raises(ValueError, match="NaN"):
        item_id_init_rows(np.full((4, 3), np.nan), dim=2, std=1.0)


def test_item_ids_start_from_the_vectors_and_are_checked(tmp_path: Path) -> None:
    split = cyclic_split()
    table = table_for(split.n_items)
    vectors = np.random.default_rng(1).normal(size=(split.n_items, 12)).astype(np.float32)
    cfg = replace(TINY, epochs=1, history_input="items", item_id_input=True, item_id_init="vectors", lr=1e-9)
    train_genrec(split, table, cfg, tmp_path / "genrec", item_vectors=vectors)
    model = load_genrec(tmp_path / "genrec")
    got = model.item_id_embedding.weight.detach().numpy()
    want = item_id_init_rows(vectors, cfg.d_model, float(model.config.initializer_factor))
    np.testing.assert_allclose(got[1:], want, atol=1e-4)  # lr ~0: still the start
    assert not got[0].any()  # row 0: no ID
    assert "item ID input (started from the coded vectors)" in model_name(cfg)
    with pytest.raises(ValueError, match="one item vector per sid table row"):
        train_genrec(split, table, cfg, tmp_path / "g2", item_vectors=vectors[:-1])
    with pytest.raises(ValueError, match="needs item_id_input"):
        train_genrec(split, table, replace(cfg, item_id_input=False), tmp_path / "g3", item_vectors=vectors)
    with pytest.raises(ValueError, match="item_id_init must be one of"):
        train_genrec(split, table, replace(cfg, item_id_init="pca"), tmp_path / "g4", item_vectors=vectors)


def test_training_follows_the_schedule(tmp_path: Path) -> None:
    split = cyclic_split()
    cfg = replace(TINY, epochs=2, eval_every=1, lr=1e-3, lr_schedule="inverse_sqrt", warmup_steps=1000)
    res = train_genrec(split, table_for(split.n_items), cfg, tmp_path / "genrec")
    steps = 0
    for h in res.fit.history:  # the lr in force at the end of each epoch: that of its last step
        steps += h["steps"]
        assert h["lr"] == pytest.approx(lr_at(steps - 1, cfg))
    assert steps > 0 and res.fit.history[-1]["lr"] < cfg.lr  # still warming up
