"""Full-ranking top-K metrics (leave-one-out protocol) and the popularity baseline.

Rank of a target = number of items with a strictly greater score (0 = top). Ties
therefore count in the target's favour; models with many tied scores should
break ties themselves (:class:`PopularityModel` does). Items already in the
history are not excluded (the shared protocol, ../shared/data/README.md).
Non-finite scores raise: a NaN makes every comparison false and would silently
rank the target first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import numpy as np
import torch
from tqdm import tqdm

DEFAULT_KS = (5, 10)


class Case(Protocol):
    """What evaluation needs of a case (``training.data.split.EvalCase`` fits)."""

    @property
    def history(self) -> tuple[int, ...]: ...

    @property
    def target(self) -> int: ...


CaseT = TypeVar("CaseT", bound=Case)


def target_ranks(scores: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor) -> np.ndarray:
    """scores [B, N], targets [B] -> 0-based ranks [B] (count of strictly greater scores)."""
    if isinstance(scores, torch.Tensor):
        t_pt = torch.as_tensor(targets, device=scores.device, dtype=torch.long)
        if not bool(torch.isfinite(scores).all()):
            raise ValueError("scores contain NaN or inf")
        picked = scores.gather(1, t_pt[:, None])  # [B, 1]
        return (scores > picked).sum(dim=1).cpu().numpy().astype(np.int64)
    s = np.asarray(scores)
    t_np = np.asarray(targets, dtype=np.int64)
    if s.ndim != 2 or t_np.shape != (s.shape[0],):
        raise ValueError(f"scores must be [B, N] and targets [B], got {s.shape} and {t_np.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    target_scores = s[np.arange(s.shape[0]), t_np][:, None]  # [B, 1]
    return (s > target_scores).sum(axis=1).astype(np.int64)


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Share of cases whose target ranks in the top k."""
    return float((ranks < k).mean()) if len(ranks) else 0.0


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """Mean 1/log2(rank + 2) over cases ranked in the top k (one relevant item per case)."""
    if not len(ranks):
        return 0.0
    gains = np.where(ranks < k, 1.0 / np.log2(ranks.astype(np.float64) + 2.0), 0.0)
    return float(gains.mean())


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(ranks, k)
    for k in ks:
        out[f"ndcg@{k}"] = ndcg_at_k(ranks, k)
    return out


def evaluate(
    score_fn: Callable[[Sequence[CaseT]], np.ndarray | torch.Tensor],
    cases: Sequence[CaseT],
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 256,
    *,
    progress: bool = False,
) -> dict[str, float]:
    """Recall@K and NDCG@K of ``score_fn`` (cases -> scores [B, N]) over ``cases``."""
    if not cases:
        raise ValueError("no cases to evaluate")
    ranks: list[np.ndarray] = []
    n_batches = math.ceil(len(cases) / batch_size)
    for i in tqdm(range(n_batches), desc="eval", leave=False, disable=not progress):
        batch = cases[i * batch_size : (i + 1) * batch_size]
        scores = score_fn(batch)
        targets = np.fromiter((c.target for c in batch), dtype=np.int64, count=len(batch))
        ranks.append(target_ranks(scores, targets))
    return metrics_from_ranks(np.concatenate(ranks), ks)


class PopularityModel:
    """Scores every item by its training count, the same list for every user.

    Ties are broken by item index (lower first), as a served top-K list would be,
    so the baseline does not profit from the tie rule of :func:`target_ranks`.
    """

    def __init__(self, counts: np.ndarray) -> None:
        counts = np.asarray(counts)
        if counts.ndim != 1:
            raise ValueError("counts must be a 1-d array [N]")
        order = np.lexsort((np.arange(len(counts)), -counts.astype(np.float64)))  # most popular first
        scores = np.empty(len(counts), dtype=np.float64)
        scores[order] = np.arange(len(counts), 0, -1, dtype=np.float64)  # distinct, higher = more popular
        self.counts = counts
        self.item_scores = scores  # [N]

    def top(self, k: int) -> np.ndarray:
        return np.argsort(-self.item_scores, kind="stable")[:k]

    def __call__(self, cases: Sequence[Case]) -> np.ndarray:
        return np.broadcast_to(self.item_scores, (len(cases), len(self.item_scores)))  # [B, N]
