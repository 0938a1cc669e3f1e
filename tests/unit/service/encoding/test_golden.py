from __future__ import annotations

import pytest

from service.core.manifest import GoldenVector
from service.encoding.base import EncoderError
from service.encoding.fake import FakeEncoder
from service.encoding.golden import check_golden, golden_cosines

TEXTS = ["wireless headphones", "argan oil shampoo 500 ml", "a"]


def _golden(enc: FakeEncoder) -> list[GoldenVector]:
    return [GoldenVector(text=t, vector=v.tolist()) for t, v in zip(TEXTS, enc.encode(TEXTS), strict=True)]


def test_passes_with_the_encoders_own_vectors() -> None:
    enc = FakeEncoder(dim=32)
    worst = check_golden(enc, _golden(enc), min_cosine=0.999)
    assert worst == pytest.approx(1.0, abs=1e-6)
    # scale does not matter: golden vectors are compared by cosine
    scaled = [GoldenVector(g.text, [3 * x for x in g.vector]) for g in _golden(enc)]
    assert check_golden(enc, scaled, 0.999) == pytest.approx(1.0, abs=1e-6)


def test_fails_naming_the_text_of_a_tampered_vector() -> None:
    enc = FakeEncoder(dim=32)
    golden = _golden(enc)
    golden[1] = GoldenVector(golden[1].text, FakeEncoder(dim=32, seed=7).encode([golden[1].text])[0].tolist())
    with pytest.raises(EncoderError, match="argan oil shampoo"):
        check_golden(enc, golden, min_cosine=0.99)
    cos = golden_cosines(enc, golden)
    assert cos[1] < 0.99 and min(cos[0], cos[2]) > 0.999


def test_other_encoder_or_bad_vectors_fail() -> None:
    golden = _golden(FakeEncoder(dim=32))
    with pytest.raises(EncoderError):
        check_golden(FakeEncoder(dim=32, seed=3), golden, 0.99)
    with pytest.raises(EncoderError, match="shape"):
        check_golden(FakeEncoder(dim=16), golden, 0.99)
    with pytest.raises(EncoderError, match="no golden"):
        check_golden(FakeEncoder(dim=32), [], 0.99)
    with pytest.raises(EncoderError, match="zero"):
        check_golden(FakeEncoder(dim=32), [GoldenVector("a", [0.0] * 32)], 0.99)
