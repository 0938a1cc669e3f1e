"""Recall/NDCG of the generative recommender: the target's rank is its position in the top-10 list the
served constrained beam search returns (a target not in the list is a miss; the shared
``training.metrics.metrics_from_ranks``), and the item -> next item prior beside it: prior-guided decoding
(weight picked on validation), the prior alone in a full ranking, and the prior alone through the same beam."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from service.core.transitions import TransitionPrior
from service.semantic_ids.beam import beam_search
from service.semantic_ids.prefix_index import PrefixIndex
from training.config import GenRecConfig
from training.data.split import EvalCase, Split
from training.genrec.decode import Guided, decode_top, decoded_ranks
from training.metrics import metrics_from_ranks, target_ranks

logger = logging.getLogger(__name__)


def evaluate_generative(
    model: Any,
    item_tokens: np.ndarray,
    index: PrefixIndex,
    cases: Sequence[EvalCase],
    cfg: GenRecConfig,
    *,
    progress: bool = False,
    k: int = 10,
    prior: TransitionPrior | None = None,
    prior_weight: float = 0.0,
) -> dict[str, float]:
    """Recall/NDCG@{5,10}: the target's rank is its position in the decoded top-k (miss = k).
    ``prior`` / ``prior_weight``: prior-guided decoding (:func:`decode_top`)."""
    if not cases:
        raise ValueError("no cases to evaluate")
    model.eval()
    ranks: list[np.ndarray] = []
    bs = cfg.eval_batch_size
    for start in tqdm(range(0, len(cases), bs), desc="decode", leave=False, disable=not progress):
        batch = cases[start : start + bs]
        histories = [c.history for c in batch]
        top = decode_top(model, item_tokens, index, histories, cfg, k, prior, prior_weight)
        ranks.append(decoded_ranks(top, batch))
    return metrics_from_ranks(np.concatenate(ranks))


def prior_guided_metrics(
    model: Any,
    encoder_table: np.ndarray,
    index: PrefixIndex,
    split: Split,
    val: Sequence[EvalCase],
    test_cases: Sequence[EvalCase],
    cfg: GenRecConfig,
    val_plain: float,
) -> dict[str, Any]:
    """Prior-guided decoding of the trained model: each of ``cfg.prior_weights`` on the validation
    cases (NDCG@10), the best on test. The prior counts what ``cfg.prior_counts`` names (validation:
    the training sequences either way)."""
    from training.evaluation.prior import counted_sequences

    if any(not math.isfinite(w) or w <= 0 for w in cfg.prior_weights):
        raise ValueError(f"prior_weights must be > 0, got {cfg.prior_weights}")
    counted_sequences(split, test_cases, cfg.prior_counts)  # an unknown prior_counts fails before decoding
    prior = TransitionPrior.from_sequences(
        counted_sequences(split, val, cfg.prior_counts), split.n_items, cfg.prior_beta
    )
    val_ndcg: dict[str, float] = {}
    for w in tqdm(cfg.prior_weights, desc="prior weights", leave=False):
        guided = Guided(prior=prior, prior_weight=w)
        m = evaluate_generative(model, encoder_table, index, val, cfg, **guided)
        val_ndcg[f"{w:g}"] = round(m["ndcg@10"], 4)
        logger.info("genrec + item->next prior, weight %g: val %s", w, {k: round(v, 4) for k, v in m.items()})
    best = max(cfg.prior_weights, key=lambda w: val_ndcg[f"{w:g}"])
    logger.info(
        "prior weight %g picked on validation (ndcg@10 %.4f; %.4f as decoded in training)",
        best,
        val_ndcg[f"{best:g}"],
        val_plain,
    )
    if cfg.prior_counts != "train":
        prior = TransitionPrior.from_sequences(
            counted_sequences(split, test_cases, cfg.prior_counts), split.n_items, cfg.prior_beta
        )
    guided = Guided(prior=prior, prior_weight=best)
    test = evaluate_generative(model, encoder_table, index, test_cases, cfg, progress=True, **guided)
    logger.info("genrec + item->next prior test: %s", {k: round(v, 4) for k, v in test.items()})
    alone = prior_alone_metrics(prior, test_cases)
    in_beam = prior_beam_metrics(prior, index, test_cases, cfg)
    logger.info("item->next prior alone (full ranking) test: %s", {k: round(v, 4) for k, v in alone.items()})
    logger.info("item->next prior alone (in the beam) test: %s", {k: round(v, 4) for k, v in in_beam.items()})
    return {
        "weight": best,
        "beta": cfg.prior_beta,
        "counts": cfg.prior_counts,
        "val_ndcg@10": val_ndcg,
        "test": test,
        "prior_alone_test": alone,
        "prior_beam_test": in_beam,
    }


def prior_alone_metrics(prior: TransitionPrior, cases: Sequence[EvalCase], batch: int = 1024) -> dict[str, float]:
    """The counting model by itself: every item ranked by log p(j | history) (full ranking, ties
    counted in the target's favour as in the seqrec harness), what the guided decoding adds to."""
    ranks = []
    for start in range(0, len(cases), batch):
        part = cases[start : start + batch]
        scores = prior.history_log_prob([c.history for c in part])  # [B, N]
        ranks.append(target_ranks(scores, np.array([c.target for c in part], dtype=np.int64)))
    return metrics_from_ranks(np.concatenate(ranks))


def prior_beam_metrics(
    prior: TransitionPrior, index: PrefixIndex, cases: Sequence[EvalCase], cfg: GenRecConfig, k: int = 10
) -> dict[str, float]:
    """The prior by itself through the same constrained beam as the model (width ``cfg.beam``): a step
    with constant logits, renormalised, so each level follows the prior's mass alone. What prior-guided
    decoding adds to it is what the model adds inside the decoder the service runs (the full ranking of
    :func:`prior_alone_metrics` also keeps items a width-limited beam drops)."""
    vocab = index.layout.vocab_size

    def step(prefix: torch.Tensor) -> torch.Tensor:
        return torch.zeros((*prefix.shape[:2], vocab), device=prefix.device)  # [B, W, V]

    ranks = []
    for start in range(0, len(cases), cfg.eval_batch_size):
        part = cases[start : start + cfg.eval_batch_size]
        lp = torch.from_numpy(prior.history_log_prob([c.history for c in part])).to(index.device)  # [B, N]
        res = beam_search(step, index, len(part), max(cfg.beam, k), k, log_prior=lp, renormalize=True)
        ranks.append(decoded_ranks(res.items.cpu().numpy(), part))
    return metrics_from_ranks(np.concatenate(ranks))
