"""Fit the generative recommender (TIGER-style T5 over semantic-ID tokens) on a leave-one-out split.

:func:`train_genrec` trains on every position of the training sequences (:mod:`training.genrec.data`),
early-stops on validation NDCG@10 of the served beam search (:mod:`training.genrec.evaluate`), scores
the test cases and writes ``<out_dir>`` = ``<artifact root>/genrec``: the model via ``save_pretrained``
(config.json + model.safetensors). Serving loads it with torch + transformers (see
``service/semantic_ids/decoder.py`` for why not ONNX) and never imports ``training/``. Training
imports ``service.semantic_ids`` (pure torch, no web dependencies) so that evaluation uses the
served beam search itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.core.sid import SidTable
from service.semantic_ids.decoder import GENREC_DIR, with_item_ids
from service.semantic_ids.prefix_index import PrefixIndex
from training.config import ITEM_ID_INITS, LR_SCHEDULES, GenRecConfig
from training.data.split import EvalCase, Split
from training.genrec.data import GenRecBatches
from training.genrec.distill import TeacherTargets, check_distill, distill_loss
from training.genrec.evaluate import evaluate_generative, prior_guided_metrics
from training.loop import FitResult, LoopConfig, fit, resolve_device
from training.models.genrec import build_genrec, genrec_loss

logger = logging.getLogger(__name__)


@dataclass
class GenRecResult:
    section: dict[str, Any]  # the manifest's extra["genrec"]
    metrics: dict[str, Any]
    train_seconds: float
    fit: FitResult
    model: Any = None  # the trained model (best validated weights), in eval mode
    test_cases: list[EvalCase] | None = None  # the cases ``metrics["test"]`` scored


def lr_at(step: int, cfg: GenRecConfig, total_steps: int = 0) -> float:
    """Learning rate of 0-based ``step`` under ``cfg.lr_schedule``; ``total_steps``: the run's
    intended length (``cfg.epochs`` x batches per epoch), which the cosine schedule decays over."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {cfg.lr_schedule!r}")
    n = step + 1
    warm = max(cfg.warmup_steps, 1)
    if n < warm:
        return cfg.lr * n / warm
    if cfg.lr_schedule == "inverse_sqrt":
        return cfg.lr * math.sqrt(warm / n)
    if total_steps < 1:
        raise ValueError("the cosine lr schedule needs the run's total steps (epochs x batches per epoch)")
    progress = min(max((n - warm) / max(total_steps - warm, 1), 0.0), 1.0)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def item_id_init_rows(vectors: np.ndarray, dim: int, std: float) -> np.ndarray:
    """Starting ID vectors [N, dim] from item vectors [N, F] (``GenRecConfig.item_id_init: vectors``):
    the centred vectors projected on their top ``dim`` principal components (fewer when F < dim, the
    rest zero), the whole matrix scaled to standard deviation ``std`` (that of a random start), so the
    ID vectors' geometry is that of the vectors: neighbours start as neighbours."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"item vectors must be a non-empty [N, F] array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("item vectors hold NaN or inf")
    x = x - x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)  # rows: principal directions, largest first
    k = min(dim, vt.shape[0])
    out = np.zeros((len(x), dim))
    out[:, :k] = x @ vt[:k].T
    spread = float(out.std())
    if spread > 0:
        out *= std / spread
    return out.astype(np.float32)


# Knobs that only say how long to train: changing them must not stop a run from resuming.
# The prior knobs only change decoding after training.
RUN_LENGTH_FIELDS = (
    "epochs",
    "max_minutes",
    "patience",
    "threads",
    "test_users",
    "eval_batch_size",
    "prior_weights",
    "prior_beta",
    "prior_counts",
)


def run_fingerprint(cfg: GenRecConfig, table: SidTable, split: Split, teacher: str = "") -> str:
    """Identifies model config + data of a checkpointed run (run-length knobs excluded); ``teacher``:
    the distillation targets' digest (a run resumes only on the same targets)."""
    conf = {k: v for k, v in asdict(cfg).items() if k not in RUN_LENGTH_FIELDS}
    # Knobs of inputs a run does not use change nothing (and runs from before they existed resume).
    if not cfg.item_id_input:
        conf.pop("item_id_input")
        conf.pop("item_dropout")
    if cfg.item_id_init == "random":
        conf.pop("item_id_init")
    if cfg.lr_schedule == "cosine":  # the decay spans the configured epochs: another length is another run
        conf["epochs"] = cfg.epochs
    if cfg.lr_schedule == "constant":
        conf.pop("lr_schedule")
        conf.pop("warmup_steps")
    if cfg.distill_weight == 0:
        for key in ("distill_weight", "distill_top", "distill_temperature"):
            conf.pop(key)
    payload: list[Any] = [conf, table.sids.shape, int(table.sids.sum()), len(split.train)]
    if cfg.distill_weight > 0:
        payload.append(teacher)
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def check_teacher(cfg: GenRecConfig, teacher: TeacherTargets | None, n_items: int) -> None:
    """The distillation knobs are in range and, when on, ``teacher`` holds targets computed with them."""
    check_distill(cfg)
    if cfg.distill_weight == 0:
        return
    if teacher is None:
        raise ValueError("distill_weight > 0 needs the dense model's teacher targets (training.genrec.distill)")
    k = min(cfg.distill_top, n_items)
    if teacher.rows.shape[1] != k or teacher.temperature != cfg.distill_temperature:
        raise ValueError(
            f"teacher targets hold top {teacher.rows.shape[1]} at temperature {teacher.temperature}, the config"
            f" asks for top {k} at temperature {cfg.distill_temperature}"
        )
    if int(teacher.rows.max(initial=0)) >= n_items:
        raise ValueError(f"teacher targets name item rows beyond the sid table's {n_items}")


def distill_metrics(cfg: GenRecConfig, teacher: TeacherTargets) -> dict[str, Any]:
    """What the results row records of a distilled run."""
    out: dict[str, Any] = {
        "weight": cfg.distill_weight,
        "top": teacher.rows.shape[1],
        "temperature": teacher.temperature,
        "teacher_seconds": round(teacher.seconds, 1),
    }
    if teacher.val_ndcg is not None:
        out["teacher_val_ndcg@10"] = round(teacher.val_ndcg, 4)
    return out


def train_genrec(
    split: Split,
    table: SidTable,
    cfg: GenRecConfig,
    out_dir: Path,
    ckpt_dir: Path | None = None,
    item_vectors: np.ndarray | None = None,
    teacher: TeacherTargets | None = None,
) -> GenRecResult:
    """Train on ``split.train``, early-stop on validation NDCG@10, score the test cases, save to ``out_dir``.

    ``ckpt_dir``: resumable checkpoints (kept outside the artifact set).
    ``item_vectors``: what the RQ-VAE coded [N, F] (``semantic_ids.codec_inputs``), the start of the
    item ID vectors when ``cfg.item_id_init`` is ``vectors``.
    ``teacher``: the dense model's targets for the training examples (:func:`training.genrec.distill.fit_teacher`),
    required when ``cfg.distill_weight`` > 0, unused otherwise."""
    if len(table) != split.n_items:
        raise ValueError(f"sid table has {len(table)} rows but the split has {split.n_items} items")
    if cfg.item_id_init not in ITEM_ID_INITS:
        raise ValueError(f"item_id_init must be one of {ITEM_ID_INITS}, got {cfg.item_id_init!r}")
    if cfg.item_id_init == "vectors":
        if not cfg.item_id_input:
            raise ValueError("item_id_init: vectors needs item_id_input (there are no item ID vectors to start)")
        if item_vectors is None or len(item_vectors) != len(table):
            got = "none" if item_vectors is None else f"{len(item_vectors)} rows"
            raise ValueError(f"item_id_init: vectors needs one item vector per sid table row ({len(table)}), got {got}")
    check_teacher(cfg, teacher, len(table))
    previous_threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(split, table, cfg, out_dir, ckpt_dir, item_vectors, teacher if cfg.distill_weight > 0 else None)
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    split: Split,
    table: SidTable,
    cfg: GenRecConfig,
    out_dir: Path,
    ckpt_dir: Path | None,
    item_vectors: np.ndarray | None,
    teacher: TeacherTargets | None,
) -> GenRecResult:
    device = resolve_device(cfg.device)
    item_tokens = table.tokens()  # [N, depth]
    index = PrefixIndex(table.sids, table.layout, device)
    model = build_genrec(table.layout, cfg, seed=cfg.seed, n_items=len(table))
    if cfg.item_id_init == "vectors" and item_vectors is not None and model.item_id_embedding is not None:
        rows = item_id_init_rows(item_vectors, int(model.config.d_model), float(model.config.initializer_factor))
        with torch.no_grad():  # row 0 stays the zero "no ID" vector
            model.item_id_embedding.weight[1:] = torch.from_numpy(rows)
        logger.info("genrec: item ID vectors start from %d principal components of the coded vectors", rows.shape[1])
    # Encoder rows of the items: sid tokens, plus the ID column for a model with item-ID input.
    history_table = with_item_ids(item_tokens, np.arange(len(table))) if cfg.item_id_input else None
    encoder_table = item_tokens if history_table is None else history_table
    batches = GenRecBatches(item_tokens, split.train, cfg, device, history_table, teacher)
    rng = np.random.default_rng(cfg.seed)
    val = split.val
    if cfg.val_users and len(val) > cfg.val_users:
        val = [val[i] for i in sorted(rng.choice(len(val), cfg.val_users, replace=False))]
    logger.info(
        "genrec: %d training examples, %d batches/epoch, %d validation cases, %d parameters",
        len(batches.targets),
        len(batches),
        len(val),
        sum(p.numel() for p in model.parameters()),
    )
    loop = LoopConfig(
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        epochs=cfg.epochs,
        max_minutes=cfg.max_minutes,
        patience=cfg.patience,
        eval_every=cfg.eval_every,
        metric="ndcg@10",
        seed=cfg.seed,
        device=cfg.device,
    )
    fingerprint = run_fingerprint(cfg, table, split, teacher.digest() if teacher is not None else "")
    total_steps = cfg.epochs * len(batches)
    lr_at(0, cfg, total_steps)  # an unknown schedule fails here, before training

    def schedule(step: int, optimizer: torch.optim.Optimizer) -> None:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg, total_steps)

    result = fit(
        model,
        batches.epoch,
        len(batches),
        genrec_loss if teacher is None else distill_loss(cfg.distill_weight),  # type: ignore[arg-type]
        lambda m: evaluate_generative(m, encoder_table, index, val, cfg),
        loop,
        ckpt_dir,
        fingerprint=fingerprint,
        schedule=None if cfg.lr_schedule == "constant" else schedule,
    )
    model.eval()
    test_cases = split.test
    if cfg.test_users and len(test_cases) > cfg.test_users:
        test_cases = [test_cases[i] for i in sorted(rng.choice(len(test_cases), cfg.test_users, replace=False))]
    test = evaluate_generative(model, encoder_table, index, test_cases, cfg, progress=True)
    logger.info("genrec test: %s", {k: round(v, 4) for k, v in test.items()})
    model.save_pretrained(str(out_dir))
    metrics: dict[str, Any] = {
        "test": test,
        "test_cases": len(test_cases),
        "val_best": result.best_metric,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "stop_reason": result.stop_reason,
    }
    if teacher is not None:
        metrics["distill"] = distill_metrics(cfg, teacher)
    if cfg.prior_weights:
        metrics["prior"] = prior_guided_metrics(
            model, encoder_table, index, split, val, test_cases, cfg, result.best_metric
        )
    section = {
        "dir": GENREC_DIR,
        "max_items": cfg.max_items,
        "beam": cfg.beam,
        "metrics": metrics,
        "train_seconds": round(result.train_seconds, 1),
    }
    if "prior" in metrics:  # served by prior-guided decoding when the artifact set has the transition prior
        section["prior_weight"] = metrics["prior"]["weight"]
    return GenRecResult(section, metrics, result.train_seconds, result, model, list(test_cases))
