"""Building a sequential model from its config (item encoder + tower), the served cold-ID rule, and the
dense ranking as the service computes it (:func:`served_top`)."""

import copy
import logging
import time
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from service.core.seqrec import ColdIdRule, fill_cold_ids
from training.config import SeqRecConfig
from training.loop import history_tensors
from training.models.item_encoders import CodeItemEncoder, TextAdaptorItemEncoder
from training.models.pq import train_pq
from training.models.seqrec import FusedItemEncoder, ItemEncoder, LastStateTower, SeqRec

logger = logging.getLogger(__name__)


DEFAULT_TEXT_DIM = 384  # all-MiniLM-L6-v2; only used for the zero projection of an ID-only model


ITEM_ENCODERS = ("fused", "text_moe", "pq")


def build_item_encoder(
    cfg: SeqRecConfig, n_items: int, text_vectors: np.ndarray | None, known: np.ndarray | None = None
) -> ItemEncoder:
    """The item representation named by ``cfg.item_encoder`` (see ``SeqRecConfig``)."""
    if cfg.item_encoder not in ITEM_ENCODERS:
        raise ValueError(f"unknown item_encoder {cfg.item_encoder!r} (known: {', '.join(ITEM_ENCODERS)})")
    if cfg.item_encoder == "fused":
        return FusedItemEncoder(
            n_items,
            cfg.hidden,
            text_vectors if cfg.use_text else None,
            use_id=cfg.use_id,
            use_text=cfg.use_text,
            known=known,
            id_dropout=cfg.id_dropout,
            item_norm=cfg.item_norm,
        )
    if text_vectors is None:
        raise ValueError(f"item_encoder {cfg.item_encoder!r} needs text vectors [N, T]")
    if text_vectors.shape[0] != n_items:
        raise ValueError(f"text_vectors has {text_vectors.shape[0]} rows for {n_items} items")
    if cfg.item_encoder == "text_moe":
        return TextAdaptorItemEncoder(text_vectors, cfg.hidden, n_experts=cfg.n_experts, dropout=cfg.adaptor_dropout)
    # "pq": codes of every item from its text (trained or not), codebooks fit on the whole catalog's text.
    t0 = time.perf_counter()
    codebook = train_pq(text_vectors, cfg.pq_m, cfg.pq_k, iters=cfg.pq_iters, seed=cfg.seed)
    codes = codebook.encode(text_vectors)  # [N, M]
    n_unique = len(np.unique(codes, axis=0))
    logger.info(
        "pq: %d x %d codes in %.1fs, %d distinct code tuples for %d items",
        codebook.m,
        codebook.k,
        time.perf_counter() - t0,
        n_unique,
        n_items,
    )
    return CodeItemEncoder(codes, codebook.k, cfg.hidden)


def build_model(
    cfg: SeqRecConfig,
    n_items: int,
    text_vectors: np.ndarray | None,
    known: np.ndarray | None = None,
    *,
    profile_dim: int = 0,
) -> SeqRec:
    return SeqRec(
        n_items,
        hidden=cfg.hidden,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        max_len=cfg.max_len,
        dropout=cfg.dropout,
        item_encoder=build_item_encoder(cfg, n_items, text_vectors, known),
        profile_dim=profile_dim,
        profile_dropout=cfg.profile_dropout,
    )


def cold_id_rule(cfg: SeqRecConfig) -> ColdIdRule:
    """The config's rule for items without a trained ID row; off unless the items fuse ID and text."""
    if cfg.item_encoder != "fused" or not (cfg.use_id and cfg.use_text):
        return ColdIdRule()
    return ColdIdRule(cfg.cold_id_k, cfg.cold_id_temperature, cfg.cold_id_scale)


def with_cold_ids(model: SeqRec, rule: ColdIdRule) -> SeqRec:
    """The model as the service scores it: a copy whose untrained ID rows hold what
    :func:`service.core.seqrec.fill_cold_ids` borrows from the trained items (the service does the same
    from the exported table, whose untrained rows are zero). ``model`` itself when there is nothing to fill."""
    items = model.items
    if not (isinstance(items, FusedItemEncoder) and items.use_id and items.use_text and rule.active):
        return model
    known = items.known.detach().cpu().numpy() > 0  # [N]
    if known.all():
        return model
    served = copy.deepcopy(model)
    served_items = served.items
    assert isinstance(served_items, FusedItemEncoder) and served_items.id_emb is not None
    with torch.no_grad():
        ids = items.id_table().detach().cpu().numpy()  # [N, D]
        text = items.text.detach().cpu().numpy()  # [N, T]
        filled = fill_cold_ids(text, ids, ~known, rule, text[known], ids[known])
        served_items.id_emb.weight.copy_(torch.from_numpy(filled))
        served_items.known.fill_(1.0)
    return served


def served_top(
    model: SeqRec,
    table: torch.Tensor,
    histories: Sequence[Sequence[int] | np.ndarray],
    k: int,
    batch_size: int,
    order: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Dense mode's ranking of ``histories``, batched as the service computes it: the exported tower
    (:class:`LastStateTower`) over each history's last ``model.max_len`` item vectors, dot product with
    every row of ``table`` (``model.all_item_reps()``, [N, D]). Batches follow ``order`` (default: as
    given). -> per batch (positions in ``histories`` [B], user vectors [B, D], top ``k`` scores [B, k]
    and rows [B, k], best first), computed without gradients."""
    model.eval()
    tower = LastStateTower(model.tower)
    order = np.arange(len(histories)) if order is None else order
    k = min(k, table.shape[0])
    with torch.no_grad():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            ids, mask = history_tensors([histories[i] for i in idx], model.max_len, table.device)  # [B, L]
            users = tower(table[ids], mask)  # [B, D]
            scores, rows = torch.topk(users @ table.T, k, dim=1)  # [B, k]
            yield idx, users, scores, rows


def variant_name(cfg: SeqRecConfig) -> str:
    if cfg.item_encoder != "fused":
        return cfg.item_encoder
    return "id+text" if cfg.use_id and cfg.use_text else ("id" if cfg.use_id else "text")
