from __future__ import annotations

import numpy as np
import pytest

from service.encoding.base import Encoder, EncoderError
from service.encoding.fake import FakeEncoder


def test_protocol_dim_and_unit_rows() -> None:
    enc = FakeEncoder()
    assert isinstance(enc, Encoder)
    assert enc.dim == 384 and enc.max_length == 128 and enc.name
    v = enc.encode(["red running shoes", "", "!!!", "x" * 10_000])
    assert v.shape == (4, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert FakeEncoder(dim=16).encode(["a"]).shape == (1, 16)
    assert enc.encode([]).shape == (0, 384)


def test_deterministic_across_instances_and_batches() -> None:
    texts = ["organic argan oil shampoo", "usb-c charger", "yoga mat"]
    a = FakeEncoder().encode(texts)
    b = FakeEncoder().encode(list(reversed(texts)))[::-1]
    np.testing.assert_array_equal(a, b)
    c = FakeEncoder(seed=1).encode(texts)
    assert not np.allclose(a, c)


def test_similar_texts_are_closer_than_unrelated_ones() -> None:
    v = FakeEncoder().encode(["red running shoes for men", "red running shoes for women", "stainless chef knife"])
    assert v[0] @ v[1] > 0.6 > v[0] @ v[2]
    # case and punctuation do not matter
    w = FakeEncoder().encode(["Red Running-Shoes!", "red running shoes"])
    np.testing.assert_allclose(w[0], w[1], rtol=1e-6)


def test_truncation_and_errors() -> None:
    enc = FakeEncoder(max_length=3)
    np.testing.assert_allclose(enc.encode(["a b c d e"])[0], enc.encode(["a b c"])[0])
    with pytest.raises(EncoderError):
        enc.encode([None])  # type: ignore[list-item]
    with pytest.raises(EncoderError):
        FakeEncoder(dim=0)
