"""The beam-aware T5 step equals the Hugging Face forward; history encoding."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from service.core.sid import EOS_TOKEN, PAD_TOKEN, SidLayout
from service.semantic_ids.beam import beam_search
from service.semantic_ids.decoder import (
    Seq2SeqStep,
    T5BeamStep,
    encoder_inputs,
    history_input,
    history_tokens,
    item_id_embeddings,
    model_history_tokens,
    with_item_ids,
)
from service.semantic_ids.prefix_index import PrefixIndex
from training.config import GenRecConfig
from training.models.genrec import build_genrec

# TIGER's layout at a constant lr (the GenRecConfig defaults are the CPU configs' model).
TIGER: dict[str, Any] = {
    "history_input": "tokens",
    "item_id_input": False,
    "item_id_init": "random",
    "lr_schedule": "constant",
    "warmup_steps": 0,
}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=["tokens", "items"])
def setup(request: pytest.FixtureRequest) -> tuple[object, SidLayout, np.ndarray]:
    layout = SidLayout(3, 8, 4)
    rng = np.random.default_rng(0)
    flat = rng.choice(int(np.prod(layout.level_sizes)), 300, replace=False)
    sids = np.stack(np.unravel_index(flat, layout.level_sizes), axis=1)
    cfg = GenRecConfig(d_model=32, d_ff=64, n_heads=2, d_kv=16, history_input=request.param, item_id_input=False)
    model = build_genrec(layout, cfg, seed=0).eval()
    return model, layout, sids


def test_history_tokens_layout() -> None:
    item_tokens = np.array([[2, 10, 20, 30], [3, 11, 21, 31], [4, 12, 22, 32]])
    ids, mask = history_tokens(item_tokens, [[0, 1, 2], [2]], max_items=2)
    assert ids[0].tolist() == [3, 11, 21, 31, 4, 12, 22, 32, EOS_TOKEN]
    assert ids[1].tolist() == [4, 12, 22, 32, EOS_TOKEN] + [PAD_TOKEN] * 4
    assert mask.sum(1).tolist() == [9, 5]
    with pytest.raises(ValueError, match="empty history"):
        history_tokens(item_tokens, [[]], 2)


def test_per_item_history_layout() -> None:
    item_tokens = np.array([[2, 10, 20, 30], [3, 11, 21, 31], [4, 12, 22, 32]])
    ids, mask = history_tokens(item_tokens, [[0, 1, 2], [2]], max_items=2, per_item=True)
    eos = [EOS_TOKEN, PAD_TOKEN, PAD_TOKEN, PAD_TOKEN]
    assert ids.shape == (2, 3, 4)
    assert ids[0].tolist() == [[3, 11, 21, 31], [4, 12, 22, 32], eos]
    assert ids[1].tolist() == [[4, 12, 22, 32], eos, [PAD_TOKEN] * 4]
    assert mask.tolist() == [[True, True, True], [True, True, False]]


def test_per_item_encoder_input_sums_the_item_token_embeddings(setup: tuple[object, SidLayout, np.ndarray]) -> None:
    model, layout, sids = setup
    tokens = layout.to_tokens(sids)
    ids, mask = model_history_tokens(model, tokens, [[5, 6], [7]], 4)
    ids_t = torch.from_numpy(ids)
    inputs = encoder_inputs(model, ids_t)
    if history_input(model) == "tokens":
        assert ids.shape == (2, 9) and set(inputs) == {"input_ids"}
        return
    emb = model.get_input_embeddings().weight  # type: ignore[attr-defined]
    got = inputs["inputs_embeds"]
    assert got.shape == (2, 3, emb.shape[1])
    torch.testing.assert_close(got[0, 1], emb[torch.from_numpy(tokens[6])].sum(0))
    torch.testing.assert_close(got[0, 2], emb[EOS_TOKEN])  # EOS row: the PAD slots add nothing
    torch.testing.assert_close(got[1, 2], torch.zeros_like(emb[0]))  # padding position
    assert mask.sum(1).tolist() == [3, 2]


@pytest.mark.parametrize("history_input", ["tokens", "items"])
def test_fast_step_matches_hf_forward_in_both_layouts(history_input: str) -> None:
    layout = SidLayout(3, 8, 4)
    rng = np.random.default_rng(0)
    flat = rng.choice(int(np.prod(layout.level_sizes)), 200, replace=False)
    sids = np.stack(np.unravel_index(flat, layout.level_sizes), axis=1)
    cfg = GenRecConfig(d_model=32, d_ff=64, n_heads=2, d_kv=16, history_input=history_input, item_id_input=False)
    model = build_genrec(layout, cfg, seed=0).eval()
    tokens = layout.to_tokens(sids)
    hist = [[3, 4], [3, 4], [9]]
    ids, mask = model_history_tokens(model, tokens, hist, 4)
    assert ids.shape[1] == (3 if history_input == "items" else 9)  # 2 items + eos
    ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask).long()
    slow, fast = Seq2SeqStep(model, ids_t, mask_t), T5BeamStep(model, ids_t, mask_t)
    for t in range(layout.depth):
        prefix = torch.from_numpy(tokens[rng.integers(0, 200, (3, 4))][:, :, :t])  # [B, W, t]
        got = fast(prefix)
        torch.testing.assert_close(got, slow(prefix), atol=1e-4, rtol=1e-4)
    index = PrefixIndex(sids, layout)
    assert beam_search(slow, index, 3, 6, 5).items.tolist() == beam_search(fast, index, 3, 6, 5).items.tolist()


def test_item_id_column_adds_the_item_vector() -> None:
    layout = SidLayout(2, 4, 4)
    cfg = GenRecConfig(d_model=16, d_ff=32, n_heads=2, d_kv=8, history_input="items", item_id_input=True)
    model = build_genrec(layout, cfg, seed=0, n_items=3)
    assert item_id_embeddings(model) == 3
    tokens = layout.to_tokens([[0, 1, 0], [1, 2, 0], [3, 3, 1]])
    rows = with_item_ids(tokens, np.array([0, -1, 2]))  # item 1 has no ID (added after training)
    assert rows[:, -1].tolist() == [1, 0, 3]
    ids, _ = model_history_tokens(model, rows, [[0, 1, 2]], 4)
    assert ids.shape == (1, 4, layout.depth + 1)
    got = encoder_inputs(model, torch.from_numpy(ids))["inputs_embeds"]
    emb, id_emb = model.get_input_embeddings().weight, model.item_id_embedding.weight  # type: ignore[union-attr]
    with torch.no_grad():
        torch.testing.assert_close(got[0, 0], emb[torch.from_numpy(tokens[0])].sum(0) + id_emb[1])
        torch.testing.assert_close(got[0, 1], emb[torch.from_numpy(tokens[1])].sum(0))  # no ID: sid tokens only
        torch.testing.assert_close(got[0, 3], emb[EOS_TOKEN])
    with pytest.raises(ValueError, match="3 columns; the model reads 4"):
        model_history_tokens(model, tokens, [[0]], 4)  # rows without the ID column
    with pytest.raises(ValueError, match="history_input: items"):
        build_genrec(layout, GenRecConfig(history_input="tokens", item_id_input=True), n_items=3)
    with pytest.raises(ValueError, match="number of items"):
        build_genrec(layout, replace(cfg, item_id_input=True))


def test_unknown_history_input_is_refused() -> None:
    with pytest.raises(ValueError, match="history_input"):
        build_genrec(SidLayout(2, 4, 4), GenRecConfig(history_input="words"))


def test_fast_step_matches_hf_forward(setup: tuple[object, SidLayout, np.ndarray]) -> None:
    model, layout, sids = setup
    tokens = layout.to_tokens(sids)
    rng = np.random.default_rng(1)
    ids, mask = history_tokens(tokens, [rng.integers(0, 300, n).tolist() for n in (1, 5, 3)], 4)
    ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask).long()
    slow, fast = Seq2SeqStep(model, ids_t, mask_t), T5BeamStep(model, ids_t, mask_t)
    for t in range(layout.depth):
        prefix = torch.from_numpy(tokens[rng.integers(0, 300, (3, 4))][:, :, :t])  # [B, W, t]
        torch.testing.assert_close(fast(prefix), slow(prefix), atol=1e-4, rtol=1e-4)
    index = PrefixIndex(sids, layout)
    a = beam_search(slow, index, 3, 6, 5)
    b = beam_search(fast, index, 3, 6, 5)
    assert a.items.tolist() == b.items.tolist()


def test_cached_step_follows_reordered_beams(setup: tuple[object, SidLayout, np.ndarray]) -> None:
    """Incremental decoding after reorder() gives the logits of a full recompute."""
    model, layout, sids = setup
    tokens = torch.from_numpy(layout.to_tokens(sids))
    ids, mask = history_tokens(layout.to_tokens(sids), [[1, 2], [3]], 4)
    ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask).long()
    fast, slow = T5BeamStep(model, ids_t, mask_t), Seq2SeqStep(model, ids_t, mask_t)
    rng = np.random.default_rng(2)
    prefix = torch.zeros((2, 3, 0), dtype=torch.long)
    fast(prefix)
    for t in range(1, layout.depth):
        src = torch.from_numpy(rng.integers(0, prefix.shape[1], (2, 4)))  # [B, W'=4]
        fast.reorder(src)
        new_tok = tokens[torch.from_numpy(rng.integers(0, 300, (2, 4))), t - 1][:, :, None]
        prefix = torch.cat([prefix.gather(1, src[:, :, None].expand(-1, -1, prefix.shape[2])), new_tok], dim=2)
        torch.testing.assert_close(fast(prefix), slow(prefix), atol=1e-4, rtol=1e-4)
