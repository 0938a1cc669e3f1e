"""Evaluation protocols over a leave-one-out split: items hidden from training (cold items) and test
histories cut short, with the metrics split by cold / warm target."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from training.data.split import EvalCase, Split
from training.metrics import metrics_from_ranks


def hide_items(split: Split, frac: float, seed: int) -> tuple[Split, npt.NDArray[np.bool_]]:
    """Hide a seeded share ``frac`` of the items from training.

    Returns (split without them in any training sequence and without validation cases that
    target them, cold mask [N]). Histories of evaluation cases keep cold items: at test time
    they are known by their text, as a new catalog item would be. Test cases are all kept.
    """
    if not 0.0 < frac < 1.0:
        raise ValueError(f"cold_frac must be in (0, 1), got {frac}")
    rng = np.random.default_rng(seed)
    n_cold = max(1, round(frac * split.n_items))
    cold = np.zeros(split.n_items, dtype=bool)
    cold[rng.choice(split.n_items, size=n_cold, replace=False)] = True
    train = [[i for i in s if not cold[i]] for s in split.train]
    val = [c for c in split.val if not cold[c.target]]
    return Split(n_items=split.n_items, train=train, val=val, test=list(split.test)), cold


def shorten(cases: Sequence[EvalCase], k: int) -> list[EvalCase]:
    """The cases with each history cut to its last ``k`` items (same user and target)."""
    if k < 1:
        raise ValueError(f"short history length must be >= 1, got {k}")
    return [dataclasses.replace(c, history=c.history[-k:]) for c in cases]


def metrics_by_cold(ranks: npt.NDArray[np.int64], is_cold: npt.NDArray[np.bool_]) -> dict[str, float | None]:
    """Recall/NDCG@10 on the cases whose target is a cold item, on the others, and on all."""
    cold_m = metrics_from_ranks(ranks[is_cold]) if is_cold.any() else None
    warm_m = metrics_from_ranks(ranks[~is_cold])
    all_m = metrics_from_ranks(ranks)
    return {
        "cold_recall@10": None if cold_m is None else cold_m["recall@10"],
        "cold_ndcg@10": None if cold_m is None else cold_m["ndcg@10"],
        "warm_recall@10": warm_m["recall@10"],
        "warm_ndcg@10": warm_m["ndcg@10"],
        "recall@10": all_m["recall@10"],
        "ndcg@10": all_m["ndcg@10"],
    }


def cold_metrics(
    ranks: npt.NDArray[np.int64], cold: npt.NDArray[np.bool_], cases: Sequence[EvalCase]
) -> dict[str, float | None]:
    """:func:`metrics_by_cold` of ``ranks`` [n_cases], split by whether a case's target is ``cold`` [N]."""
    return metrics_by_cold(ranks, np.array([bool(cold[c.target]) for c in cases], dtype=bool))
