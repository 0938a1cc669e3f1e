"""Training losses."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def full_softmax_ce(states: Tensor, targets: Tensor, mask: Tensor, table: Tensor) -> Tensor:
    """Cross-entropy of the next item over the full catalog.

    states [B, L, D], targets [B, L] (next item of each position), mask [B, L]
    (nonzero where a position has a next item), table [N, D] -> scalar mean loss.

    Logits are computed only at the masked positions: with short left-padded
    sequences most of [B, L] is padding, and [B*L, N] logits would dominate time.
    """
    keep = mask > 0  # [B, L]
    picked = states[keep]  # [M, D]
    if picked.shape[0] == 0:
        raise ValueError("batch has no position with a next item")
    logits = F.linear(picked, table)  # [M, N]
    return F.cross_entropy(logits, targets[keep])
