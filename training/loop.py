"""Training loop (early stopping, wall-clock budget, resumable checkpoints) and
the sequence batching the sequential recommenders share.

``fit`` is model-agnostic: it takes a function from (model, batch) to a loss and a
function from model to validation metrics. It keeps the weights of the best
validated epoch and restores them at the end.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from training.checkpoint import BEST_NAME, TrainState, cpu_state_dict, load_checkpoint, save_checkpoint, save_weights

logger = logging.getLogger(__name__)

BatchT = TypeVar("BatchT")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ------------------------------------------------------------------ loop


@dataclass
class LoopConfig:
    lr: float = 3e-3
    weight_decay: float = 0.0
    epochs: int = 30
    max_minutes: float = 10.0  # training budget in wall-clock minutes, over resumed runs too
    patience: int = 3  # evaluations without improvement before stopping
    eval_every: int = 1
    metric: str = "ndcg@10"  # higher is better
    grad_clip: float = 5.0  # 0 = off
    seed: int = 0
    device: str = "cpu"
    progress: bool = True


@dataclass
class EpochLog:
    epoch: int
    loss: float
    seconds: float
    val: dict[str, float] | None


@dataclass
class FitResult:
    epochs: int  # epochs run (a budget-cut epoch counts)
    best_epoch: int
    best_metric: float
    train_seconds: float
    stop_reason: str  # "early_stop" | "budget" | "max_epochs"
    history: list[dict[str, Any]]
    resumed_from: int  # epochs already done when this call started (0 = fresh)


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; biases and LayerNorm gains are never decayed."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def fit(
    model: nn.Module,
    batches: Callable[[int], Iterable[BatchT]],
    n_batches: int,
    step_loss: Callable[[nn.Module, BatchT], Tensor],
    validate: Callable[[nn.Module], dict[str, float]],
    cfg: LoopConfig,
    ckpt_dir: Path | None = None,
    *,
    fingerprint: str = "",
) -> FitResult:
    """Train ``model`` in place and leave it holding the best validated weights.

    batches(epoch) yields the batches of one epoch (deterministic per epoch, so a
    resumed run sees the same order); step_loss(model, batch) returns the loss;
    validate(model) returns metrics including ``cfg.metric``. With ``ckpt_dir``,
    ``last.pt`` / ``best.pt`` are written after every epoch and a matching
    ``last.pt`` found there is resumed.
    """
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    model.to(device)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    state = TrainState(fingerprint=fingerprint)
    best_weights: dict[str, Tensor] | None = None
    if ckpt_dir is not None:
        loaded = load_checkpoint(ckpt_dir, model, optimizer, fingerprint=fingerprint)
        if loaded is not None:
            state = loaded
            best_path = ckpt_dir / BEST_NAME
            if best_path.is_file():
                best_weights = torch.load(best_path, map_location="cpu", weights_only=True)["model"]
            # A run that stopped on its epoch limit or budget goes on when given more of either;
            # one that early-stopped stays stopped.
            if state.finished and state.stop_reason in ("max_epochs", "budget"):
                state.finished = not (state.epoch < cfg.epochs and state.elapsed < cfg.max_minutes * 60.0)
            logger.info(
                "resumed from %s at epoch %d (best %s %.4f)%s",
                ckpt_dir,
                state.epoch,
                cfg.metric,
                state.best_metric,
                ", already finished" if state.finished else "",
            )
    resumed_from = state.epoch
    budget = cfg.max_minutes * 60.0

    while not state.finished:
        if state.epoch >= cfg.epochs:
            state.finished, state.stop_reason = True, "max_epochs"
            break
        if state.elapsed >= budget:
            state.finished, state.stop_reason = True, "budget"
            break
        epoch = state.epoch + 1
        model.train()
        t0 = time.perf_counter()
        start_elapsed = state.elapsed
        total, steps, cut = 0.0, 0, False
        bar = tqdm(batches(epoch), total=n_batches, desc=f"epoch {epoch}", leave=False, disable=not cfg.progress)
        for batch in bar:
            loss = step_loss(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at epoch {epoch}, step {steps}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            total += float(loss.detach())
            steps += 1
            if steps % 20 == 0:
                bar.set_postfix(loss=f"{total / steps:.4f}")
            if start_elapsed + time.perf_counter() - t0 >= budget:
                cut = True
                break
        bar.close()
        train_s = time.perf_counter() - t0
        last_epoch = cut or epoch >= cfg.epochs
        val: dict[str, float] | None = None
        if steps and (epoch % cfg.eval_every == 0 or last_epoch):
            model.eval()
            val = validate(model)
            model.train()
        state.elapsed = start_elapsed + time.perf_counter() - t0
        state.epoch = epoch
        loss_mean = total / max(steps, 1)
        if val is not None:
            score = val[cfg.metric]
            if score > state.best_metric:
                state.best_metric, state.best_epoch, state.bad_evals = score, epoch, 0
                best_weights = cpu_state_dict(model)
                if ckpt_dir is not None:
                    save_weights(ckpt_dir / BEST_NAME, best_weights, {"epoch": epoch, cfg.metric: score})
            else:
                state.bad_evals += 1
        state.history.append(
            {"epoch": epoch, "loss": round(loss_mean, 5), "train_s": round(train_s, 2), "val": val, "steps": steps}
        )
        logger.info(
            "epoch %d: loss %.4f, val %s %s, %.1fs (%.1fs training)%s",
            epoch,
            loss_mean,
            cfg.metric,
            f"{val[cfg.metric]:.4f}" if val is not None else "-",
            time.perf_counter() - t0,
            train_s,
            " [budget reached]" if cut else "",
        )
        if cut:
            state.finished, state.stop_reason = True, "budget"
        elif state.bad_evals >= cfg.patience:
            state.finished, state.stop_reason = True, "early_stop"
        elif epoch >= cfg.epochs:
            state.finished, state.stop_reason = True, "max_epochs"
        if ckpt_dir is not None:
            save_checkpoint(ckpt_dir, model, optimizer, state)

    if best_weights is not None:
        model.load_state_dict(best_weights)
    model.eval()
    logger.info(
        "training stopped (%s) after %d epochs, %.0fs; best %s %.4f at epoch %d",
        state.stop_reason,
        state.epoch,
        state.elapsed,
        cfg.metric,
        state.best_metric,
        state.best_epoch,
    )
    return FitResult(
        epochs=state.epoch,
        best_epoch=state.best_epoch,
        best_metric=state.best_metric,
        train_seconds=state.elapsed,
        stop_reason=state.stop_reason,
        history=copy.deepcopy(state.history),
        resumed_from=resumed_from,
    )


# ------------------------------------------------------- sequence batches


class SeqBatch(NamedTuple):
    items: Tensor  # [B, L] long, left-padded with 0
    mask: Tensor  # [B, L] bool, True = real item (and it has a next item)
    targets: Tensor  # [B, L] long, next item of each position (0 at padding)


def training_examples(train: Sequence[Sequence[int]], max_len: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(inputs s[:-1], targets s[1:]) of every sequence with at least 2 items, the last ``max_len``."""
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for s in train:
        if len(s) < 2:
            continue
        arr = np.asarray(s, dtype=np.int64)
        out.append((arr[:-1][-max_len:], arr[1:][-max_len:]))
    return out


def left_pad(seqs: Sequence[np.ndarray], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Left-pad int sequences with 0. -> (ids [B, L], mask [B, L] bool)"""
    length = max(len(s) for s in seqs) if length is None else length
    ids = np.zeros((len(seqs), length), dtype=np.int64)
    mask = np.zeros((len(seqs), length), dtype=bool)
    for i, s in enumerate(seqs):
        n = min(len(s), length)
        if n:
            ids[i, length - n :] = s[len(s) - n :]
            mask[i, length - n :] = True
    return ids, mask


class SequenceBatches:
    """Shuffled batches of training examples, padded to the longest in each batch.

    Examples are shuffled, then sorted by length within windows of ``bucket``
    batches, and the batches shuffled again: batches hold similar lengths (little
    padding compute) while every epoch still mixes the data differently.
    """

    def __init__(
        self,
        train: Sequence[Sequence[int]],
        max_len: int,
        batch_size: int,
        *,
        seed: int = 0,
        bucket: int = 32,
        device: torch.device | str = "cpu",
    ) -> None:
        self.examples = training_examples(train, max_len)
        if not self.examples:
            raise ValueError("no training sequence has 2 or more items")
        self.lengths = np.array([len(x) for x, _ in self.examples])
        self.batch_size = batch_size
        self.seed = seed
        if bucket < 1:
            raise ValueError(f"bucket must be >= 1 (1 = plain shuffled batches), got {bucket}")
        self.bucket = bucket
        self.device = torch.device(device)

    def __len__(self) -> int:
        return math.ceil(len(self.examples) / self.batch_size)

    @property
    def n_positions(self) -> int:
        return int(self.lengths.sum())

    def epoch(self, epoch: int) -> Iterator[SeqBatch]:
        rng = np.random.default_rng((self.seed, epoch))
        order = rng.permutation(len(self.examples))
        window = self.batch_size * self.bucket
        chunks: list[np.ndarray] = []
        for start in range(0, len(order), window):
            part = order[start : start + window]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            chunks += [part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size)]
        for j in rng.permutation(len(chunks)):
            yield self.collate(chunks[j])

    def collate(self, idx: np.ndarray) -> SeqBatch:
        inputs, mask = left_pad([self.examples[i][0] for i in idx])
        targets, _ = left_pad([self.examples[i][1] for i in idx])
        return SeqBatch(
            items=torch.from_numpy(inputs).to(self.device),
            mask=torch.from_numpy(mask).to(self.device),
            targets=torch.from_numpy(targets).to(self.device),
        )


def history_tensors(
    histories: Sequence[Sequence[int] | np.ndarray], max_len: int, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """Evaluation input: each history's last ``max_len`` items, left-padded. -> ids [B, L], mask [B, L]"""
    if any(len(h) == 0 for h in histories):
        raise ValueError("empty history")
    ids, mask = left_pad([np.asarray(h[-max_len:], dtype=np.int64) for h in histories])
    return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
