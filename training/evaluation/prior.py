"""Full-ranking ranks of a trained sequential model, alone or plus the item -> next item prior
(``service.core.transitions.TransitionPrior``), and the "+mc" evaluation that picks the prior's shape and
weight on validation. The build uses :func:`markov_eval` to choose the served prior weight."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from service.core.transitions import PriorShape, TransitionPrior
from training.data.split import EvalCase, Split, known_sequences
from training.loop import history_tensors
from training.metrics import metrics_from_ranks, target_ranks
from training.models.seqrec import SeqRec

logger = logging.getLogger(__name__)


# What the counting models (popularity, transitions, the "+mc" prior) count (BenchSeqRecConfig.prior_counts):
# "train" = the training sequences only, for validation and test alike; "histories" = everything known at
# evaluation time (training.data.split.known_sequences): the training sequences for validation, plus each
# user's validation item for test, whose histories hold it. Never a case's target.
PRIOR_COUNTS = ("train", "histories")


def counted_sequences(split: Split, cases: Sequence[EvalCase], counts: str) -> list[list[int]]:
    """The sequences a counting model scoring ``cases`` counts under ``counts`` (:data:`PRIOR_COUNTS`)."""
    if counts not in PRIOR_COUNTS:
        raise ValueError(f"prior_counts must be one of {PRIOR_COUNTS}, got {counts!r}")
    return split.train if counts == "train" else known_sequences(split, cases)


def model_ranks(
    model: SeqRec, cases: Sequence[EvalCase], profiles: np.ndarray | None = None, batch_size: int = 256
) -> npt.NDArray[np.int64]:
    """0-based full-ranking rank of every case's target, in ``cases`` order. -> [n_cases]"""
    return prior_ranks(model, cases, None, (0.0,), profiles, batch_size)[0]


def prior_ranks(
    model: SeqRec,
    cases: Sequence[EvalCase],
    prior: TransitionPrior | None,
    weights: Sequence[float],
    profiles: np.ndarray | None = None,
    batch_size: int = 256,
) -> npt.NDArray[np.int64]:
    """Ranks of every case's target under log-softmax(model) + w x prior log p(j | history) (the last
    history item, or the prior shape's last few), one row per weight (without ``prior``: the model's
    own scores). -> [W, n_cases]"""
    if prior is None:
        ranks = priors_ranks(model, cases, [], [0.0], profiles, batch_size, plain=True)[0]  # [1, n]
        return np.repeat(ranks, len(weights), axis=0)
    return priors_ranks(model, cases, [prior], weights, profiles, batch_size)[0]


def priors_ranks(
    model: SeqRec,
    cases: Sequence[EvalCase],
    priors: Sequence[TransitionPrior],
    weights: Sequence[float],
    profiles: np.ndarray | None = None,
    batch_size: int = 256,
    *,
    plain: bool = False,
) -> npt.NDArray[np.int64]:
    """:func:`prior_ranks` for several priors at once (the model scores each batch once).
    -> [P, W, n_cases]; ``plain``: one row of the model's own ranks instead -> [1, 1, n_cases]"""
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(cases)), key=lambda i: min(len(cases[i].history), model.max_len))
    shape = (1, 1) if plain else (len(priors), len(weights))
    ranks = np.empty((*shape, len(cases)), dtype=np.int64)
    prof = None if profiles is None else torch.from_numpy(np.ascontiguousarray(profiles, dtype=np.float32))
    with torch.no_grad():
        table = model.all_item_reps()  # [N, D]
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            batch = [cases[i] for i in idx]
            ids, mask = history_tensors([c.history for c in batch], model.max_len, device)  # [B, L]
            p = None if prof is None else prof[torch.tensor([c.user for c in batch])].to(device)  # [B, P]
            scores = model.score(ids, mask, table, p)  # [B, N]
            targets = np.array([c.target for c in batch], dtype=np.int64)
            if plain:
                ranks[0, 0, idx] = target_ranks(scores, targets)
                continue
            logp = torch.log_softmax(scores.float(), dim=-1).cpu()  # [B, N]
            for p_i, prior in enumerate(priors):
                mc = torch.from_numpy(prior.history_log_prob([c.history for c in batch]))  # [B, N]
                for w_i, w in enumerate(weights):
                    ranks[p_i, w_i, idx] = target_ranks(logp + w * mc, targets)
    return ranks


def markov_eval(
    model: SeqRec,
    split: Split,
    weights: Sequence[float],
    beta: float,
    profiles: np.ndarray | None = None,
    shapes: Sequence[PriorShape] = (PriorShape(),),
    counts: str = "train",
) -> dict[str, Any]:
    """The "+mc" ranking of a trained model: the prior shape and weight picked on validation NDCG@10,
    then test, the prior counted over :func:`counted_sequences` of each (``counts``: :data:`PRIOR_COUNTS`).
    -> {"weight", "beta", "shape", "counts", "val", "test", "val_by_weight" (the chosen shape's),
    "val_by_shape" (each shape's best)}"""
    if not weights or any(w <= 0 for w in weights):
        raise ValueError(f"markov weights must be a non-empty list of positive numbers, got {list(weights)}")
    if not shapes:
        raise ValueError("markov_eval needs at least one prior shape")
    val_seqs = counted_sequences(split, split.val, counts)
    priors = [TransitionPrior.from_sequences(val_seqs, split.n_items, beta, sh) for sh in shapes]
    val_ranks = priors_ranks(model, split.val, priors, weights, profiles)  # [P, W, n]
    val = [[metrics_from_ranks(r) for r in per_w] for per_w in val_ranks]
    ndcg = np.array([[m["ndcg@10"] for m in per_w] for per_w in val])  # [P, W]
    best_p, best_w = (int(i) for i in np.unravel_index(int(np.argmax(ndcg)), ndcg.shape))  # first max wins ties
    prior, weight = priors[best_p], weights[best_w]
    if counts != "train":
        prior = TransitionPrior.from_sequences(
            counted_sequences(split, split.test, counts), split.n_items, beta, shapes[best_p]
        )
    test = metrics_from_ranks(prior_ranks(model, split.test, prior, [weight], profiles)[0])
    logger.info(
        "+mc: shape %s, weight %g (val N@10 %s) -> test R@10 %.4f N@10 %.4f",
        prior.shape.label,
        weight,
        "; ".join(f"{sh.label}: {ndcg[i].max():.4f}" for i, sh in enumerate(shapes)),
        test["recall@10"],
        test["ndcg@10"],
    )
    return {
        "weight": float(weight),
        "beta": float(beta),
        "shape": prior.shape.to_dict(),
        "counts": counts,
        "val": val[best_p][best_w],
        "test": test,
        "val_by_weight": {f"{w:g}": float(ndcg[best_p, i]) for i, w in enumerate(weights)},
        "val_by_shape": {sh.label: float(ndcg[i].max()) for i, sh in enumerate(shapes)},
    }
