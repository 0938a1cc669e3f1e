"""Training losses."""

from __future__ import annotations

import torch
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


def info_nce(queries: Tensor, docs: Tensor, temperature: float, *, symmetric: bool = True) -> Tensor:
    """In-batch InfoNCE: row i of ``queries`` matches row i of ``docs``; every other row is a negative.

    queries [B, H], docs [B, H] (unit vectors, so the logits are cosines / temperature)
    -> scalar. ``symmetric`` averages the query->doc and doc->query cross-entropies.
    """
    if queries.shape != docs.shape or queries.ndim != 2:
        raise ValueError(f"queries and docs must both be [B, H], got {tuple(queries.shape)} and {tuple(docs.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = queries @ docs.T / temperature  # [B, B]
    labels = torch.arange(queries.shape[0], device=queries.device)  # [B]
    loss = F.cross_entropy(logits, labels)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(logits.T, labels))
    return loss
