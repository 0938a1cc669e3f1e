"""Gradient caching gives the parameter gradients of a plain full-batch step."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from tests.unit.training.conftest import tiny_text_encoder
from training.gradcache import Chunk, gradcache_backward, gradcache_step, plain_backward
from training.loop import LoopConfig, fit
from training.losses import info_nce
from training.models.text_encoder import TextEncoder


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny matrices: extra threads only add contention on a shared CPU."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _tiny(dropout: float) -> TextEncoder:
    return tiny_text_encoder(
        vocab_size=100,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        max_position_embeddings=64,
    ).train()


def _batch(n: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (n, length), generator=g)  # [B, L]
    lengths = torch.randint(2, length + 1, (n,), generator=g)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()  # [B, L], ragged rows
    return ids * mask, mask


def _chunks(ids: torch.Tensor, mask: torch.Tensor, size: int) -> list[Chunk]:
    return [Chunk(ids[s : s + size], mask[s : s + size]) for s in range(0, ids.shape[0], size)]


def _grads(model: TextEncoder) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _loss(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    return info_nce(q, d, 0.05)


def _run(model: TextEncoder, fn: Any, views: list[list[Chunk]]) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = fn(lambda c: model(c.inputs, c.attention_mask), views, _loss)
    return float(loss), _grads(model)


@pytest.mark.parametrize("chunk", [1, 3, 5])
def test_gradcache_equals_one_full_batch_step(chunk: int) -> None:
    model = _tiny(dropout=0.0)
    q_ids, q_mask = _batch(10, 6, seed=1)
    d_ids, d_mask = _batch(10, 12, seed=2)
    full_loss, full = _run(model, plain_backward, [[Chunk(q_ids, q_mask)], [Chunk(d_ids, d_mask)]])
    gc_loss, cached = _run(model, gradcache_backward, [_chunks(q_ids, q_mask, chunk), _chunks(d_ids, d_mask, chunk)])
    assert gc_loss == pytest.approx(full_loss, rel=1e-5)
    assert full.keys() == cached.keys() and len(full) > 10
    for name, g in full.items():
        torch.testing.assert_close(cached[name], g, rtol=1e-4, atol=1e-6, msg=name)
    assert any(float(g.abs().sum()) > 0 for g in full.values())


def test_gradcache_replays_dropout_masks() -> None:
    """With dropout on, the replay must reuse each chunk's masks: compare with the same chunks under autograd."""
    model = _tiny(dropout=0.3)
    q_ids, q_mask = _batch(8, 6, seed=3)
    d_ids, d_mask = _batch(8, 10, seed=4)
    views = [_chunks(q_ids, q_mask, 3), _chunks(d_ids, d_mask, 3)]
    torch.manual_seed(123)
    ref_loss, ref = _run(model, plain_backward, views)
    torch.manual_seed(123)
    gc_loss, cached = _run(model, gradcache_backward, views)
    assert gc_loss == pytest.approx(ref_loss, rel=1e-5)
    for name, g in ref.items():
        torch.testing.assert_close(cached[name], g, rtol=1e-4, atol=1e-6, msg=name)
    # and the masks really differ between seeds (so the check above is not vacuous)
    torch.manual_seed(7)
    other_loss, _ = _run(model, plain_backward, views)
    assert other_loss != pytest.approx(ref_loss, rel=1e-6)


def test_gradcache_rejects_empty_view() -> None:
    model = _tiny(dropout=0.0)
    ids, mask = _batch(2, 4, seed=0)
    with pytest.raises(ValueError, match="at least one chunk"):
        gradcache_backward(lambda c: model(c.inputs, c.attention_mask), [[Chunk(ids, mask)], []], _loss)


def test_info_nce_prefers_matching_rows_and_checks_shapes() -> None:
    q = torch.nn.functional.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    matched = info_nce(q, q, 0.05)
    shuffled = info_nce(q, q.roll(1, dims=0), 0.05)
    assert float(matched) < float(shuffled)
    one_way = info_nce(q, q.roll(1, dims=0), 0.05, symmetric=False)
    assert torch.isfinite(one_way)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(q, q, 0.0)
    with pytest.raises(ValueError, match=r"\[B, H\]"):
        info_nce(q, q[:3], 0.05)


def test_fit_with_a_gradcache_step_trains_like_plain_steps() -> None:
    """Gradient caching plugs into the one loop as its step: two epochs of chunked steps end at the
    weights of two epochs of plain full-batch loss steps (the loop back-propagates those itself)."""
    pairs = [(_batch(6, 5, seed=10 + i), _batch(6, 9, seed=20 + i)) for i in range(3)]

    def batches(epoch: int) -> list[tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]]:
        return pairs[epoch % 3 :] + pairs[: epoch % 3]

    def validate(model: torch.nn.Module) -> dict[str, float]:
        (q_ids, q_mask), (d_ids, d_mask) = pairs[0]
        with torch.no_grad():
            return {"ndcg@10": -float(_loss(model(q_ids, q_mask), model(d_ids, d_mask)))}

    cfg = LoopConfig(lr=1e-3, epochs=2, patience=10, grad_clip=1.0, progress=False)
    plain = _tiny(dropout=0.0)

    def loss_step(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        (q_ids, q_mask), (d_ids, d_mask) = batch
        return _loss(model(q_ids, q_mask), model(d_ids, d_mask))

    fit(plain, batches, 3, loss_step, validate, cfg)

    cached = _tiny(dropout=0.0)
    start = {k: v.clone() for k, v in cached.state_dict().items()}
    step = gradcache_step(
        lambda b: [_chunks(*b[0], 4), _chunks(*b[1], 4)], lambda c: cached(c.inputs, c.attention_mask), _loss
    )
    res = fit(cached, batches, 3, step, validate, cfg)
    assert res.epochs == 2 and [h["steps"] for h in res.history] == [3, 3]
    moved = False
    for (name, a), b in zip(cached.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
        moved |= not torch.equal(a, start[name])
    assert moved  # training changed the weights, so the comparison is not vacuous
