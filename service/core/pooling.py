"""Mean pooling and L2 normalisation, the one definition used everywhere.

The torch version in ``training/models/text_encoder.py`` computes the same
thing on tensors; ``tests/unit/core/test_pooling.py`` checks they agree.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

EPS = 1e-12


def mean_pool(hidden: npt.NDArray[np.floating], mask: npt.NDArray[np.integer]) -> npt.NDArray[np.float32]:
    """Average token states where ``mask`` is 1.

    hidden: [B, L, D]; mask: [B, L] (1 = real token) -> [B, D]
    """
    m = mask.astype(np.float32)[:, :, None]  # [B, L, 1]
    summed = (hidden.astype(np.float32) * m).sum(axis=1)  # [B, D]
    counts = np.clip(m.sum(axis=1), 1e-9, None)  # [B, 1]
    return (summed / counts).astype(np.float32)


def l2_normalize(x: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Row-wise unit length. x: [B, D] -> [B, D]"""
    x32 = x.astype(np.float32)
    norms = np.sqrt((x32 * x32).sum(axis=-1, keepdims=True))
    return (x32 / np.maximum(norms, EPS)).astype(np.float32)
