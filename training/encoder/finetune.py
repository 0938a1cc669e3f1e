"""Contrastive fine-tuning of the text encoder on item metadata and/or behaviour.

``recsvc-train finetune-encoder --data DIR [--out RUN] [--config training/configs/encoder/industrial.yaml]``

* ``objective`` (``EncoderFinetuneConfig``): ``metadata`` = the title <-> document pairs
  below; ``behaviour`` = (item_text of a, item_text of b) where b directly follows a in a
  leave-one-out *training* sequence (``training/data/behaviour_pairs.py``: undirected,
  deduplicated, a new seeded subset of ``max_pairs_per_epoch`` each epoch, batches packed so
  no item appears twice: no in-batch false negative from a shared item); ``mixed`` = both,
  each batch of one kind. Behaviour and mixed runs choose the epoch by next-item text
  retrieval on validation targets (last history item -> validation item, all items as
  candidates), never by the test targets.
* Metadata pairs: query = ``service.core.items.query_text`` (the title), document =
  ``document_text(item, include_title=False)`` (brand, categories, features,
  description) -- the same functions the service and the held-out evaluation use.
  Items without a description give no pair and are skipped (count logged).
* Items are split by id into train / validation / test *before* training
  (``training.encoder.heldout.split_items``, saved as ``RUN/split.json``); only train items are
  trained on, validation items choose the epoch (MRR), test items are never read here.
* One shared encoder (all-MiniLM-L6-v2), mean pooling + L2, cosine / temperature,
  in-batch InfoNCE, symmetric (query->doc and doc->query cross-entropies averaged).
* AdamW (no decay on biases / LayerNorm), linear warmup over ``warmup_ratio`` of all
  steps, then linear decay to 0.
* Batch ``batch_size`` (512 reference) on CPU by gradient caching in chunks of
  ``chunk_size`` (``training/gradcache.py``).
* ``freeze_layers = k > 0``: the embeddings and the first k transformer layers stay
  frozen; their hidden states are computed once per text (no dropout) and cached, so
  a step runs only the top layers. This is what makes several epochs fit a 1-thread
  CPU budget; ``freeze_layers = 0`` fine-tunes everything.
* The epoch loop is ``training.loop.fit`` (budget, early stopping, checkpoints) with this
  job's gradient-cached step (``backward_step``) and warmup/decay (``schedule``); epoch 0 is
  the base model, so the kept weights never validate worse than it.
* Deterministic for a seed; ``RUN/last.pt`` after every epoch resumes an interrupted run
  (same config and data), ``RUN/best.pt`` holds the best validated weights.

Output: ``RUN/model/`` (HF format + tokenizer; feed it to ``recsvc-train build

Layout: the data side (item split, pairs, text views, epoch batches) is
:mod:`training.encoder.finetune_data`; here the model
(:func:`_load_encoder`), views (:func:`_build_sources`), validation (:func:`_make_validate`),
the loop (:func:`_train`) and the summary (:func:`_summary`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from service.core.items import item_text
from training.config import EncoderFinetuneConfig
from training.data.behaviour_pairs import BehaviourPairs
from training.data.loader import Dataset, load_dataset
from training.data.split import EvalCase
from training.encoder.finetune_data import (
    ItemPairs,
    PairBatch,
    PairSource,
    TextView,
    behaviour_pairs,
    embed_view,
    make_encode,
    make_epoch_batches,
    split_item_pairs,
)
from training.encoder.heldout import pair_texts, retrieval_metrics
from training.gradcache import gradcache_backward, plain_backward
from training.loop import FitResult, LoopConfig, fit, resolve_device, seed_everything
from training.losses import info_nce
from training.metrics import metrics_from_ranks, target_ranks
from training.models.text_encoder import TextEncoder, load_tokenizer

logger = logging.getLogger(__name__)

INFO_FILE = "train_info.json"
MODEL_DIR = "model"
VAL_METRIC = "mrr"
OBJECTIVES = ("metadata", "behaviour", "mixed")


# ------------------------------------------------------------------ schedule and validation


def lr_at(step: int, total: int, base_lr: float, warmup_ratio: float) -> float:
    """Linear warmup over ceil(warmup_ratio * total) steps, then linear decay to 0 at ``total``. step is 0-based."""
    warmup = max(1, math.ceil(warmup_ratio * total))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    return base_lr * max(0.0, (total - step) / max(1, total - warmup))


def next_item_metrics(item_vecs: np.ndarray, cases: Sequence[EvalCase]) -> dict[str, float]:
    """Text retrieval of the next item: query = the last history item's vector, candidates = every item.

    item_vecs [N, H] unit vectors. The query item itself is not a candidate (it would score 1.0)
    unless it is the target. -> Recall@10, NDCG@10, MRR
    """
    if not cases:
        raise ValueError("no validation cases")
    last = np.array([c.history[-1] for c in cases], dtype=np.int64)  # [V]
    targets = np.array([c.target for c in cases], dtype=np.int64)  # [V]
    ranks: list[np.ndarray] = []
    for s in range(0, len(cases), 1024):
        q, t = last[s : s + 1024], targets[s : s + 1024]
        scores = item_vecs[q] @ item_vecs.T  # [b, N]
        self_hit = q != t
        scores[np.flatnonzero(self_hit), q[self_hit]] = -2.0  # below any cosine
        ranks.append(target_ranks(scores, t))
    r = np.concatenate(ranks)  # [V]
    m = metrics_from_ranks(r, (10,))
    return {"recall@10": m["recall@10"], "ndcg@10": m["ndcg@10"], "mrr": float((1.0 / (r + 1.0)).mean())}


# ------------------------------------------------------------------ job


def _fingerprint(cfg: EncoderFinetuneConfig, sources: Sequence[PairSource], texts: Sequence[str]) -> str:
    keep = {
        k: v
        for k, v in dataclasses.asdict(cfg).items()
        if k not in ("threads", "device", "max_minutes", "patience", "eval_batch_size")
    }
    h = hashlib.sha256(json.dumps(keep, sort_keys=True).encode())
    for src in sources:
        h.update(src.name.encode() + b"\0" + np.ascontiguousarray(src.pairs).tobytes())
    for t in texts:
        h.update(t.encode() + b"\0")
    return h.hexdigest()[:16]


def finetune_encoder(data_dir: Path, out_dir: Path | None, cfg: EncoderFinetuneConfig) -> dict[str, Any]:
    """Run (or resume) fine-tuning; returns the summary also written to ``RUN/train_info.json``."""
    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {cfg.objective!r}")
    if cfg.batch_size < 2:
        raise ValueError("batch_size must be >= 2 (in-batch negatives)")
    if cfg.chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    if cfg.temperature <= 0:
        raise ValueError("temperature must be > 0")
    if cfg.max_pairs_per_epoch < 0:
        raise ValueError(f"max_pairs_per_epoch must be >= 0 (0 = all), got {cfg.max_pairs_per_epoch}")
    previous_threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _finetune(data_dir, out_dir, cfg)
    finally:
        torch.set_num_threads(previous_threads)


def _load_encoder(cfg: EncoderFinetuneConfig, device: torch.device) -> tuple[TextEncoder, Any]:
    """The base encoder on ``device``, embeddings and first ``freeze_layers`` layers frozen; and its tokenizer."""
    model_dir = Path(cfg.base_model_dir) if cfg.base_model_dir else None
    model = TextEncoder.from_pretrained(model_dir).to(device)
    tokenizer = load_tokenizer(model_dir)
    k = cfg.freeze_layers
    if not 0 <= k < model.n_layers:
        raise ValueError(f"freeze_layers must be in [0, {model.n_layers - 1}], got {k}")
    if k > 0:
        frozen: list[nn.Module] = [model.backbone.embeddings, *model._layers()[:k]]  # type: ignore[list-item]
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(
        "encoder: %d layers, %d frozen (+ embeddings if > 0), %d trainable parameters", model.n_layers, k, n_trainable
    )
    return model, tokenizer


@dataclass
class _Sources:
    """The training pair sources, the texts they fingerprint, and the validation views."""

    sources: list[PairSource]
    fingerprint_texts: list[str]
    views: dict[str, TextView]  # "val_q" + "val_d" (metadata) or "items" (behaviour / mixed)
    cache_seconds: float


def _build_sources(
    model: TextEncoder,
    tokenizer: Any,
    cfg: EncoderFinetuneConfig,
    ds: Dataset,
    items: ItemPairs,
    behaviour: BehaviourPairs | None,
    device: torch.device,
) -> _Sources:
    """Tokenize every text once (and cache the frozen bottom's states) into the pair sources and validation views."""
    t0 = time.perf_counter()
    k = cfg.freeze_layers
    kw: dict[str, Any] = {"bottom_layers": k, "device": device, "batch_size": cfg.eval_batch_size}
    sources: list[PairSource] = []
    fingerprint_texts: list[str] = []
    views: dict[str, TextView] = {}
    if cfg.objective in ("metadata", "mixed"):
        train_items = items.train
        rng = np.random.default_rng([cfg.seed, 1])
        distractors = [train_items[i] for i in sorted(rng.permutation(len(train_items))[: cfg.val_distractors])]
        tq, td = pair_texts(train_items)
        train_q = TextView(model, tokenizer, tq, max_length=cfg.query_max_length, desc="cache train titles", **kw)
        train_d = TextView(model, tokenizer, td, max_length=cfg.doc_max_length, desc="cache train docs", **kw)
        ident = np.repeat(np.arange(len(train_items), dtype=np.int64)[:, None], 2, axis=1)  # [P, 2]
        sources.append(PairSource("metadata", train_q, train_d, ident, 0, item_disjoint=False))
        fingerprint_texts += [it.item_id for it in train_items] + td
        if cfg.objective == "metadata":
            vq, vd = pair_texts(items.val)
            _, xd = pair_texts(distractors)
            views["val_q"] = TextView(
                model, tokenizer, vq, max_length=cfg.query_max_length, desc="cache val titles", **kw
            )
            views["val_d"] = TextView(
                model, tokenizer, vd + xd, max_length=cfg.doc_max_length, desc="cache val docs", **kw
            )
    if behaviour is not None:
        texts = [item_text(it) for it in ds.items]
        items_view = TextView(
            model, tokenizer, texts, max_length=cfg.behaviour_max_length, desc="cache item texts", **kw
        )
        sources.append(
            PairSource(
                "behaviour", items_view, items_view, behaviour.pairs, cfg.max_pairs_per_epoch, item_disjoint=True
            )
        )
        fingerprint_texts += texts
        views["items"] = items_view
    cache_s = time.perf_counter() - t0
    logger.info("tokenized%s in %.1fs", " and cached the frozen bottom" if k else "", cache_s)
    return _Sources(sources, fingerprint_texts, views, cache_s)


def _make_validate(
    model: TextEncoder, views: dict[str, TextView], val_cases: list[EvalCase], cfg: EncoderFinetuneConfig
) -> Callable[[nn.Module], dict[str, float]]:
    """The epoch's validation: next-item text retrieval (behaviour / mixed) or title -> document retrieval."""

    def validate(m: nn.Module) -> dict[str, float]:
        if "items" in views:  # behaviour / mixed: next-item text retrieval on validation targets
            view = views["items"]
            vecs = embed_view(model, view, np.arange(len(view)), cfg.eval_batch_size)  # [N, H]
            return next_item_metrics(vecs, val_cases)
        val_q, val_d = views["val_q"], views["val_d"]
        q = embed_view(model, val_q, np.arange(len(val_q)), cfg.eval_batch_size)  # [V, H]
        d = embed_view(model, val_d, np.arange(len(val_d)), cfg.eval_batch_size)  # [V + X, H]
        return retrieval_metrics(q, d, np.arange(len(val_q), dtype=np.int64))

    return validate


def _train(
    model: TextEncoder,
    data: _Sources,
    validate: Callable[[nn.Module], dict[str, float]],
    cfg: EncoderFinetuneConfig,
    out: Path,
) -> tuple[FitResult, int]:
    """The shared loop (training/loop.fit): schedule, gradient-cached steps, early stop, resume.

    Returns the fit result and the number of steps per epoch.
    """
    sources = data.sources
    n_batches = len(make_epoch_batches(sources, cfg.batch_size, cfg.seed, 1))
    if n_batches == 0:
        raise ValueError("no training batch of >= 2 pairs")
    total_steps = n_batches * cfg.epochs
    encode = make_encode(model, cfg.freeze_layers)

    def loss_fn(q: Tensor, d: Tensor) -> Tensor:
        return info_nce(q, d, cfg.temperature, symmetric=cfg.symmetric)

    def backward_step(m: nn.Module, batch: PairBatch) -> Tensor:
        src = sources[batch.source]
        q_rows, d_rows = src.pairs[batch.rows, 0], src.pairs[batch.rows, 1]  # [b] each
        order = np.argsort(-src.doc.lengths[d_rows], kind="stable")  # longest docs first: less padding
        q_rows, d_rows = q_rows[order], d_rows[order]
        parts = [slice(s, s + cfg.chunk_size) for s in range(0, len(order), cfg.chunk_size)]
        views = [[src.query.chunk(q_rows[p]) for p in parts], [src.doc.chunk(d_rows[p]) for p in parts]]
        return (gradcache_backward if cfg.grad_cache else plain_backward)(encode, views, loss_fn)

    def schedule(step: int, optimizer: torch.optim.Optimizer) -> None:
        lr = lr_at(step, total_steps, cfg.lr, cfg.warmup_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr

    loop_cfg = LoopConfig(
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        epochs=cfg.epochs,
        max_minutes=cfg.max_minutes,
        patience=cfg.patience,
        eval_every=1,
        metric=VAL_METRIC,
        grad_clip=cfg.grad_clip,
        seed=cfg.seed,
        device=cfg.device,
    )
    result = fit(
        model,
        lambda epoch: make_epoch_batches(sources, cfg.batch_size, cfg.seed, epoch),
        n_batches,
        None,
        validate,
        loop_cfg,
        out,
        fingerprint=_fingerprint(cfg, sources, data.fingerprint_texts),
        backward_step=backward_step,
        schedule=schedule,
        validate_initial=True,
    )
    return result, n_batches


def _summary(
    ds: Dataset,
    cfg: EncoderFinetuneConfig,
    items: ItemPairs,
    data: _Sources,
    behaviour: BehaviourPairs | None,
    n_val_cases: int,
    n_batches: int,
    result: FitResult,
) -> dict[str, Any]:
    """What ``RUN/train_info.json`` records about the data and the run (the job adds paths and timings)."""
    loss_name = "symmetric in-batch InfoNCE" if cfg.symmetric else "in-batch InfoNCE (query->doc)"
    split = items.split
    return {
        "config": dataclasses.asdict(cfg),
        "objective": cfg.objective,
        "loss": f"{loss_name}, temperature {cfg.temperature}",
        "validation": "next-item text retrieval (last history item -> validation target, all items)"
        if "items" in data.views
        else "title -> document retrieval (validation items + distractors)",
        "n_items": ds.n_items,
        "n_split": {"train": len(split.train), "val": len(split.val), "test": len(split.test)},
        "n_without_description": len(items.no_pair),
        "n_excluded_by_title": items.n_excluded,
        "n_train_pairs": len(items.train) if cfg.objective in ("metadata", "mixed") else 0,
        "n_val_pairs": len(items.val) if cfg.objective == "metadata" else 0,
        "n_val_candidates": len(data.views["val_d"]) if "val_d" in data.views else ds.n_items,
        "n_behaviour_pairs": len(behaviour) if behaviour is not None else 0,
        "n_behaviour_transitions": behaviour.n_transitions if behaviour is not None else 0,
        "n_val_cases": n_val_cases,
        "steps_per_epoch": n_batches,
        "steps": sum(int(h.get("steps", 0)) for h in result.history),
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "best_val_" + VAL_METRIC: result.best_metric,
        "stop_reason": result.stop_reason,
        "cache_seconds": round(data.cache_seconds, 1),
        "train_seconds": round(result.train_seconds, 1),
    }


def _finetune(data_dir: Path, out_dir: Path | None, cfg: EncoderFinetuneConfig) -> dict[str, Any]:
    t_job = time.perf_counter()
    use_behaviour = cfg.objective in ("behaviour", "mixed")
    ds = load_dataset(data_dir, require_sequences=use_behaviour, allow_empty_titles=True)
    out = Path(out_dir) if out_dir is not None else Path("var/encoder") / ds.name
    out.mkdir(parents=True, exist_ok=True)

    # 1. split items by id, metadata pairs per side, behaviour pairs from training sequences only
    items = split_item_pairs(ds, cfg, out)
    behaviour, val_cases = behaviour_pairs(ds, cfg, items.excluded) if use_behaviour else (None, [])

    # 2. model, frozen bottom, cached views, validation
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    model, tokenizer = _load_encoder(cfg, device)
    data = _build_sources(model, tokenizer, cfg, ds, items, behaviour, device)
    validate = _make_validate(model, data.views, val_cases, cfg)

    # 3. the shared loop
    result, n_batches = _train(model, data, validate, cfg, out)

    # 4. best weights (fit restored them) -> HF folder
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    model.save(out / MODEL_DIR, tokenizer)
    summary = _summary(ds, cfg, items, data, behaviour, len(val_cases), n_batches, result)
    info = {
        "dataset": ds.name,
        "data": str(Path(data_dir).resolve()),
        "model_dir": str(out / MODEL_DIR),
        **summary,
        "job_seconds_this_run": round(time.perf_counter() - t_job, 1),
        "threads": torch.get_num_threads(),
        "history": result.history,
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2))
    logger.info(
        "fine-tuning %s (%s): best epoch %d (val %s %.4f), %s after %d epochs / %d steps, %.0fs; model in %s",
        ds.name,
        cfg.objective,
        result.best_epoch,
        VAL_METRIC,
        result.best_metric,
        result.stop_reason,
        result.epochs,
        info["steps"],
        result.train_seconds,
        out / MODEL_DIR,
    )
    return {k_: v for k_, v in info.items() if k_ != "history"}
