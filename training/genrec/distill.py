"""Distillation from the dense sequential model (``GenRecConfig.distill_weight`` > 0; off by default).

The generative model learns its item ranking from one hard target per example (the next item's sid).
The served dense model (``training.evaluation.hybrid.dense_config``: ID + W·text fusion, items at one
norm, the served cold-ID rule) ranks far better on the same data, and its soft distribution over the
catalog gives every training example a dense signal:

1. :func:`fit_teacher` fits that model on the split (or resumes it from ``<work>/seqrec-checkpoints``,
   the folder ``bench-genrec --hybrid`` uses) and :func:`teacher_targets` scores every training
   example's history as the service does (:class:`~training.models.seqrec.LastStateTower` over the
   history's last ``max_len`` item vectors, dot product with every item): the top ``distill_top`` rows
   [E, K] (int32) and ``softmax(score / distill_temperature)`` over them [E, K] (float16), in the order
   of :func:`~training.genrec.data.training_examples`.
2. Per batch, :func:`level_targets` turns each example's teacher items into one distribution per sid
   level along the TRUE target's prefix: at level ``l`` the teacher items whose tokens at levels < l
   equal the target's, their probabilities summed per code at level ``l`` and renormalised; a level
   where no teacher item shares the prefix has no target (masked).
3. :func:`distill_loss` adds ``distill_weight`` x the mean over (example, unmasked level) of
   KL(teacher level distribution || the model's softmax over the whole vocabulary at that decoder
   step) to the hard-target cross-entropy, both from one teacher-forced forward. The whole-vocabulary
   normalisation is the one the cross-entropy and the served beam search use
   (``service/semantic_ids/beam.py``).

No leakage: the teacher's gradients come from ``split.train`` only, and validation NDCG@10 picks its
epoch as it picks the generative model's own; its targets are computed for the training examples
only (histories and next items inside the training sequences), never for a validation or test case.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from service.semantic_ids.model import GenRecT5
from training.config import GenRecConfig
from training.data.split import Split
from training.genrec.data import training_examples
from training.models.genrec import GenRecBatch, genrec_forward
from training.models.seqrec import SeqRec
from training.seqrec.model import served_top

logger = logging.getLogger(__name__)


def check_distill(cfg: GenRecConfig) -> None:
    """Clear errors for out-of-range distillation knobs."""
    if not (math.isfinite(cfg.distill_weight) and cfg.distill_weight >= 0):
        raise ValueError(f"distill_weight must be a finite number >= 0, got {cfg.distill_weight}")
    if cfg.distill_top < 1:
        raise ValueError(f"distill_top must be >= 1, got {cfg.distill_top}")
    if not (math.isfinite(cfg.distill_temperature) and cfg.distill_temperature > 0):
        raise ValueError(f"distill_temperature must be a finite number > 0, got {cfg.distill_temperature}")


@dataclasses.dataclass
class TeacherTargets:
    """The dense model's top items for every training example (order of ``training_examples``)."""

    rows: np.ndarray  # [E, K] int32 catalog rows, best first
    probs: np.ndarray  # [E, K] float16 softmax(score / T) over the row's top K
    temperature: float
    val_ndcg: float | None = None  # the teacher's own validation NDCG@10 (its best epoch), when known
    seconds: float = 0.0  # computing the targets (not fitting the teacher)
    # What produced them (the fitted teacher's config and outcome), when known: the digest then rests on it,
    # not on float scores that another thread count may round differently.
    source: str = ""

    def __post_init__(self) -> None:
        if self.rows.ndim != 2 or self.rows.shape != self.probs.shape:
            raise ValueError(f"teacher rows {self.rows.shape} and probs {self.probs.shape} must be the same [E, K]")

    def __len__(self) -> int:
        return len(self.rows)

    def digest(self) -> str:
        """Identifies the targets (a resumed genrec run must train on the same ones): their source and
        shape when the source is known, else the arrays themselves."""
        h = hashlib.sha256(f"{self.rows.shape}:{self.temperature}".encode())
        if self.source:
            h.update(self.source.encode())
        else:
            h.update(self.rows.tobytes())
            h.update(self.probs.tobytes())
        return h.hexdigest()[:16]


def teacher_targets(
    model: SeqRec,
    train: Sequence[Sequence[int]],
    top: int,
    temperature: float,
    batch_size: int = 512,
    progress: bool = True,
) -> TeacherTargets:
    """The top ``top`` items and their probabilities for every example of ``training_examples(train)``.

    User vectors as the served dense mode computes them (``dense_side``): the exported tower over the
    history's last ``model.max_len`` item vectors; scores = dot product with every item vector.
    Examples go through in order of history length (less padding), batched, without gradients."""
    if top < 1 or not temperature > 0:
        raise ValueError(f"need top >= 1 and temperature > 0, got {top}, {temperature}")
    t0 = time.perf_counter()
    hist, _, _ = training_examples(train, model.max_len)
    order = np.argsort([len(h) for h in hist], kind="stable")
    with torch.no_grad():
        table = model.all_item_reps()  # [N, D]
    k = min(top, table.shape[0])
    rows = np.empty((len(hist), k), dtype=np.int32)
    probs = np.empty((len(hist), k), dtype=np.float16)
    batches = served_top(model, table, hist, k, batch_size, order)
    n_batches = math.ceil(len(order) / batch_size)
    for idx, _, val, top_rows in tqdm(batches, total=n_batches, desc="teacher", leave=False, disable=not progress):
        rows[idx] = top_rows.cpu().numpy()
        probs[idx] = torch.softmax(val / temperature, dim=1).cpu().numpy()
    seconds = time.perf_counter() - t0
    logger.info(
        "genrec distill: teacher top %d of %d items for %d training examples in %.1fs (%.0f MB)",
        k,
        table.shape[0],
        len(hist),
        seconds,
        (rows.nbytes + probs.nbytes) / 2**20,
    )
    return TeacherTargets(rows, probs, temperature, seconds=seconds)


def fit_teacher(
    split: Split, text_vectors: np.ndarray, cfg: GenRecConfig, dense_minutes: float, work_dir: Path
) -> TeacherTargets:
    """Fit the served dense model on ``split`` (resumed from ``work_dir``/seqrec-checkpoints when a run of
    the same config is there: a finished one is not retrained) and compute its targets for the
    training examples (:func:`teacher_targets`, training sequences only)."""
    from training.evaluation.hybrid import dense_config, train_dense
    from training.seqrec.model import cold_id_rule, with_cold_ids

    dense_cfg = dense_config(dense_minutes)
    fitted = train_dense(split, text_vectors, dense_cfg, work_dir)
    served = with_cold_ids(fitted.model, cold_id_rule(dense_cfg))  # as dense mode serves it
    best = fitted.best_val()
    val_ndcg = None if best is None else float(best["ndcg@10"])
    logger.info(
        "genrec distill: teacher = the served dense model (best epoch %d of %d, %.0fs), validation NDCG@10 %s",
        fitted.fit.best_epoch,
        fitted.fit.epochs,
        fitted.fit.train_seconds,
        "unknown" if val_ndcg is None else f"{val_ndcg:.4f}",
    )
    targets = teacher_targets(served, split.train, cfg.distill_top, cfg.distill_temperature)
    targets.val_ndcg = val_ndcg
    run = fitted.fit
    conf = {k: v for k, v in dataclasses.asdict(dense_cfg).items() if k != "max_minutes"}
    targets.source = json.dumps([conf, run.epochs, run.best_epoch, round(run.best_metric, 8)], sort_keys=True)
    return targets


def level_targets(
    teacher_tokens: Tensor, teacher_probs: Tensor, labels: Tensor, vocab_size: int
) -> tuple[Tensor, Tensor]:
    """Per-level soft targets along the true target's prefix.

    ``teacher_tokens`` [B, K, depth] (the teacher items' sid tokens), ``teacher_probs`` [B, K],
    ``labels`` [B, depth] (the target's tokens). -> (targets [B, depth, V] (rows sum to 1 where
    unmasked, zeros where masked), mask [B, depth] bool: some teacher item shares the target's
    tokens at levels < l)."""
    b, _, depth = teacher_tokens.shape
    same = teacher_tokens == labels.unsqueeze(1)  # [B, K, depth]
    # An item counts at level l when it matches the target at every level before l (level 0: all do).
    prefix = torch.ones_like(same[..., :1])  # [B, K, 1]
    match = torch.cat([prefix, same[..., :-1].long().cumprod(-1).bool()], dim=-1)  # [B, K, depth]
    weight = teacher_probs.float().unsqueeze(-1) * match  # [B, K, depth]
    mass = torch.zeros(b, depth, vocab_size, dtype=weight.dtype, device=weight.device)
    mass.scatter_add_(2, teacher_tokens.transpose(1, 2), weight.transpose(1, 2))  # [B, depth, V]
    total = mass.sum(-1)  # [B, depth]
    mask = total > 0
    return mass / total.clamp_min(torch.finfo(total.dtype).tiny).unsqueeze(-1), mask


def level_kl(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Mean over unmasked (example, level) of KL(targets || softmax(logits)) over the whole vocabulary.

    ``logits`` [B, depth, V] (decoder step l predicts level l), ``targets`` [B, depth, V], ``mask``
    [B, depth]. Zero when nothing is unmasked."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # [B, depth, V]
    kl = (torch.xlogy(targets, targets) - targets * logp).sum(-1)  # [B, depth]
    m = mask.to(kl.dtype)
    return (kl * m).sum() / m.sum().clamp_min(1.0)


def distill_loss(weight: float) -> Callable[[GenRecT5, GenRecBatch], Tensor]:
    """The training step's loss: the hard-target cross-entropy (``genrec_loss``'s) + ``weight`` x
    :func:`level_kl` to the batch's teacher targets, from the same teacher-forced forward."""

    def loss(model: GenRecT5, batch: GenRecBatch) -> Tensor:
        if batch.teacher_tokens is None or batch.teacher_probs is None:
            raise ValueError("distillation needs batches with teacher targets (GenRecBatches(teacher=...))")
        out = genrec_forward(model, batch)
        targets, mask = level_targets(batch.teacher_tokens, batch.teacher_probs, batch.labels, out.logits.shape[-1])
        ce: Tensor = out.loss
        return ce + weight * level_kl(out.logits, targets, mask)

    return loss
