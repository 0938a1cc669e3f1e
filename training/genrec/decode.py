"""Top-k items of histories by the constrained beam search the service runs (``service.semantic_ids``):
what validation, test and the hybrid evaluation decode, so the metrics are those of what is served."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np
import torch

from service.core.transitions import TransitionPrior
from service.semantic_ids.beam import beam_search
from service.semantic_ids.decoder import model_history_tokens, step_for
from service.semantic_ids.prefix_index import PrefixIndex
from training.config import GenRecConfig
from training.data.split import EvalCase


class Guided(TypedDict):
    """How a decode uses the item -> next item prior (keyword arguments of
    :func:`training.genrec.evaluate.evaluate_generative`)."""

    prior: TransitionPrior | None
    prior_weight: float


def decode_top(
    model: Any,
    item_tokens: np.ndarray,
    index: PrefixIndex,
    histories: Sequence[Sequence[int]],
    cfg: GenRecConfig,
    k: int = 10,
    prior: TransitionPrior | None = None,
    prior_weight: float = 0.0,
) -> np.ndarray:
    """Top-``k`` item rows per history by constrained beam search: [B, k] (-1 = fewer).
    ``item_tokens``: the items' encoder rows (sid tokens [N, depth]; with the item-ID column for a
    model with item-ID input).
    ``prior``: item -> next item prior added to the beam with ``prior_weight`` (prior-guided decoding)."""
    items, _ = decode_scored(model, item_tokens, index, histories, cfg, k, prior, prior_weight)
    return items


def decode_scored(
    model: Any,
    item_tokens: np.ndarray,
    index: PrefixIndex,
    histories: Sequence[Sequence[int]],
    cfg: GenRecConfig,
    k: int = 10,
    prior: TransitionPrior | None = None,
    prior_weight: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`decode_top` with the beam scores: (item rows [B, k] (-1 = fewer), scores [B, k] (-inf there))."""
    ids, mask = model_history_tokens(model, item_tokens, histories, cfg.max_items)
    step = step_for(model, ids, mask, index.device)
    log_prior = None
    if prior is not None and prior_weight > 0:
        log_prior = torch.from_numpy(prior.history_log_prob(histories)).to(index.device)  # [B, N]
    res = beam_search(
        step,
        index,
        len(histories),
        max(cfg.beam, k),
        k,
        log_prior=log_prior,
        prior_weight=prior_weight,
    )
    return res.items.cpu().numpy(), res.scores.cpu().numpy()


def decoded_ranks(top: np.ndarray, cases: Sequence[EvalCase]) -> np.ndarray:
    """Decoded top-k item rows [B, k] -> each case's target rank [B] (not decoded = k)."""
    hit = top == np.array([c.target for c in cases])[:, None]  # [B, k]
    return np.where(hit.any(1), hit.argmax(1), top.shape[1])
