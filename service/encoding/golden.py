"""Golden text -> vector pairs from the manifest, checked against the live encoder at start."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.core.manifest import GoldenVector
from service.encoding.base import Encoder, EncoderError


def check_golden(encoder: Encoder, golden: Sequence[GoldenVector], min_cosine: float) -> float:
    """Worst cosine between the encoder's vectors and the golden ones; raises below ``min_cosine``."""
    if not golden:
        raise EncoderError("the artifact manifest holds no golden vectors")
    ref = np.asarray([g.vector for g in golden], dtype=np.float32)  # [G, D]
    if ref.shape[1] != encoder.dim:
        raise EncoderError(f"golden vectors have dim {ref.shape[1]}, the encoder gives {encoder.dim}")
    got = encoder.encode([g.text for g in golden])  # [G, D]
    cos = (got * ref).sum(axis=1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1), 1e-12)
    worst = int(np.argmin(cos))
    if cos[worst] < min_cosine:
        raise EncoderError(
            f"encoder {encoder.name!r} disagrees with the manifest's golden vector for text "
            f"{golden[worst].text[:80]!r}: cosine {cos[worst]:.5f} < {min_cosine}"
        )
    return float(cos[worst])
