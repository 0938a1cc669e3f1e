"""Golden vectors: does the live encoder still give the vectors the reference gave at export?"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.core.manifest import GoldenVector
from service.encoding.base import Encoder, EncoderError


def golden_cosines(encoder: Encoder, golden: Sequence[GoldenVector]) -> np.ndarray:
    """Cosine of the live vector with the golden one, per golden text. -> [G]"""
    if not golden:
        raise EncoderError("no golden vectors to check the encoder against")
    expected = np.asarray([g.vector for g in golden], dtype=np.float32)  # [G, D]
    if expected.ndim != 2 or expected.shape[1] != encoder.dim:
        raise EncoderError(f"golden vectors have shape {expected.shape}, the encoder gives {encoder.dim}-d vectors")
    norms = np.linalg.norm(expected, axis=1, keepdims=True)  # [G, 1]
    if not np.all(np.isfinite(expected)) or np.any(norms == 0):
        raise EncoderError("golden vectors contain NaN, inf or zero rows")
    live = np.asarray(encoder.encode([g.text for g in golden]), dtype=np.float32)  # [G, D]
    live_norms = np.linalg.norm(live, axis=1, keepdims=True)  # [G, 1]
    return ((live / np.maximum(live_norms, 1e-12)) * (expected / norms)).sum(axis=1)  # [G]


def check_golden(encoder: Encoder, golden: Sequence[GoldenVector], min_cosine: float) -> float:
    """Worst cosine between the live and golden vectors; raises :class:`EncoderError` naming the text if below."""
    cos = golden_cosines(encoder, golden)  # [G]
    i = int(np.argmin(cos))
    worst = float(cos[i])
    if not worst >= min_cosine:  # also catches NaN
        text = golden[i].text
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise EncoderError(
            f"encoder {encoder.name!r} gives cosine {worst:.5f} < {min_cosine} with the golden vector of {shown!r}"
        )
    return worst
