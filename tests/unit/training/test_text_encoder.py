"""Torch reference encoder: pooling agrees with the numpy core; batching keeps input order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core import pooling
from tests.unit.training.conftest import tiny_text_encoder
from training.models.text_encoder import (
    TextEncoder,
    base_model_dir,
    encode_texts,
    l2_normalize,
    length_order,
    load_tokenizer,
    mean_pool,
)


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 4),
    seq=st.integers(1, 9),
    h=st.integers(1, 16),
    seed=st.integers(0, 2**31 - 1),
)
def test_torch_pooling_matches_core(b: int, seq: int, h: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((b, seq, h)).astype(np.float32)  # [B, L, H]
    mask = (rng.random((b, seq)) < 0.7).astype(np.int64)  # [B, L], some rows may be all padding
    got = l2_normalize(mean_pool(torch.from_numpy(hidden), torch.from_numpy(mask))).numpy()
    want = pooling.l2_normalize(pooling.mean_pool(hidden, mask))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_mean_pool_ignores_padding_and_all_masked_row_is_finite() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 5.0], [6.0, 6.0], [7.0, 7.0]]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    out = mean_pool(hidden, mask)
    torch.testing.assert_close(out[0], torch.tensor([2.0, 3.0]))
    assert torch.isfinite(out).all()
    assert torch.isfinite(l2_normalize(torch.zeros(1, 3))).all()


def test_base_model_dir_has_model_and_tokenizer() -> None:
    d = base_model_dir()
    assert (d / "config.json").is_file() and (d / "tokenizer.json").is_file()


@pytest.fixture(scope="module")
def tiny() -> tuple[TextEncoder, Any]:
    """A small random BERT with the base model's vocabulary, and the base model's real tokenizer."""
    return tiny_text_encoder(max_position_embeddings=512).eval(), load_tokenizer()


TEXTS = [
    "a",
    "stainless steel chef knife with a very long description that goes on and on about the blade and handle",
    "yoga mat",
    "Organic argan oil shampoo for dry hair, 500 ml",
    "usb-c charger 65w",
    "",
    "waterproof hiking boots for men, leather, size 44",
]


def test_length_order_is_longest_first_and_stable() -> None:
    order = length_order(["bb", "a", "cc", "ddd"])
    assert order.tolist() == [3, 0, 2, 1]


def test_encode_texts_restores_input_order(tiny: tuple[TextEncoder, Any]) -> None:
    model, tok = tiny
    together = encode_texts(model, tok, TEXTS, batch_size=3)  # batches mix lengths out of input order
    assert together.shape == (len(TEXTS), 32) and together.dtype == np.float32
    alone = np.stack([encode_texts(model, tok, [t], batch_size=1)[0] for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, rtol=1e-5)
    # distinct texts give distinct rows, so a permutation could not pass the check above
    assert len({tuple(np.round(r, 4)) for r in together}) == len(TEXTS)
    assert encode_texts(model, tok, [], batch_size=4).shape == (0, 32)


def test_encode_texts_truncates_to_max_length(tiny: tuple[TextEncoder, Any]) -> None:
    model, tok = tiny
    long_a = "red " * 300
    long_b = "red " * 300 + "blue " * 50  # differs only after token 128
    v = encode_texts(model, tok, [long_a, long_b], max_length=128)
    np.testing.assert_allclose(v[0], v[1], atol=1e-6)


def test_save_and_reload_round_trip(tiny: tuple[TextEncoder, Any], tmp_path: Path) -> None:
    model, tok = tiny
    out = model.save(tmp_path / "enc", tok)
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    again = TextEncoder.from_pretrained(out)
    a = encode_texts(model, tok, TEXTS)
    b = encode_texts(again, load_tokenizer(out), TEXTS)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_from_pretrained_missing_dir_is_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        TextEncoder.from_pretrained(tmp_path)
