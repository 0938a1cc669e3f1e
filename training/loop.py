"""The one training loop (early stopping, wall-clock budget, resumable checkpoints) and
the sequence batching the sequential recommenders share.

``fit`` is model-agnostic: it takes a step (model, batch) -> loss and a function from
model to validation metrics. Every trained model goes through it: the sequential
recommenders (``training/seqrec/fit.py``), the generative one (``train_genrec``) and the
encoder fine-tuning, whose gradient-cached step (``training/gradcache.py``) back-propagates
itself. It keeps the weights of the best validated epoch and restores them at the end.
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


def device_name(device: torch.device) -> str:
    """What results tables show for a device: the GPU's name, else the device type (``cpu``)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


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
    # Learning rate x plateau_factor after every evaluation without improvement (1.0 = constant lr);
    # training still stops after `patience` such evaluations, so the last ones run at a smaller step.
    plateau_factor: float = 1.0
    seed: int = 0
    device: str = "cpu"
    progress: bool = True


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


# One training step on one batch -> the batch loss (a scalar). A loss still attached to the autograd
# graph is back-propagated by ``fit``; a detached one means the step has accumulated the parameter
# gradients itself (gradient caching: ``training.gradcache.gradcache_step``).
Step = Callable[[nn.Module, BatchT], Tensor]
Validate = Callable[[nn.Module], dict[str, float]]  # model -> validation metrics (higher is better)
Schedule = Callable[[int, torch.optim.Optimizer], None]  # (0-based global step, optimizer) before each step


def fit(
    model: nn.Module,
    batches: Callable[[int], Iterable[BatchT]],
    n_batches: int,
    step: Step[BatchT] | None,
    validate: Validate,
    cfg: LoopConfig,
    ckpt_dir: Path | None = None,
    *,
    fingerprint: str = "",
    backward_step: Step[BatchT] | None = None,
    schedule: Schedule | None = None,
    validate_initial: bool = False,
) -> FitResult:
    """Train ``model`` in place and leave it holding the best validated weights.

    The one training loop: it owns epochs, the wall-clock budget (``cfg.max_minutes``, over
    resumed runs too), evaluation every ``cfg.eval_every`` epochs, early stopping after
    ``cfg.patience`` evaluations without gain, keeping (and restoring) the best weights,
    checkpoints, the progress bar and the per-epoch log lines. What a job brings:

    * batches(epoch) yields the batches of one epoch (deterministic per epoch, so a resumed
      run sees the same order);
    * ``step(model, batch)`` returns the batch loss (see :data:`Step`): a plain loss is
      back-propagated here, a step that computes its gradients itself (gradient caching,
      ``training/gradcache.py``) returns the detached loss. ``fit`` zeroes gradients before
      each step, then clips and steps the optimizer. ``backward_step`` is the same thing
      under the name older callers pass (give exactly one of the two);
    * validate(model) returns metrics including ``cfg.metric``;
    * ``schedule(step, optimizer)``: called before every step with the 0-based global
      step (continued across resumed runs), e.g. to set a warmup/decay learning rate;
    * ``validate_initial``: a fresh run validates the untrained model first and records
      it as epoch 0, so the kept weights are never worse (on validation) than the start.

    With ``ckpt_dir``, ``last.pt`` / ``best.pt`` are written after every epoch and a matching
    ``last.pt`` (same ``fingerprint``) found there is resumed.
    """
    if (step is None) == (backward_step is None):
        raise ValueError("fit needs exactly one of step and backward_step")
    if not 0.0 < cfg.plateau_factor <= 1.0:
        raise ValueError(f"plateau_factor must be in (0, 1], got {cfg.plateau_factor}")
    seed_everything(cfg.seed)
    model.to(resolve_device(cfg.device))
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    run = _Run(model, optimizer, cfg, ckpt_dir, TrainState(fingerprint=fingerprint))
    resumed = ckpt_dir is not None and run.resume()
    if not resumed and validate_initial:
        run.validate_start(validate)
    resumed_from = run.state.epoch
    run.global_step = sum(int(h.get("steps", 0)) for h in run.state.history)
    one_step = step if step is not None else backward_step
    assert one_step is not None
    while not run.done():
        run.epoch(batches, n_batches, one_step, validate, schedule)
    return run.finish(resumed_from)


@dataclass
class _Run:
    """One ``fit`` call: the model, its optimizer and the progress that checkpoints carry."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    cfg: LoopConfig
    ckpt_dir: Path | None
    state: TrainState
    best_weights: dict[str, Tensor] | None = None
    global_step: int = 0

    def resume(self) -> bool:
        """Continue from ``ckpt_dir/last.pt`` when it matches. -> whether it did"""
        assert self.ckpt_dir is not None
        cfg, state = self.cfg, self.state
        loaded = load_checkpoint(self.ckpt_dir, self.model, self.optimizer, fingerprint=state.fingerprint)
        if loaded is None:
            return False
        self.state = state = loaded
        best_path = self.ckpt_dir / BEST_NAME
        if best_path.is_file():
            self.best_weights = torch.load(best_path, map_location="cpu", weights_only=True)["model"]
        # A run that stopped on its epoch limit or budget goes on when given more of either;
        # one that early-stopped stays stopped.
        if state.finished and state.stop_reason in ("max_epochs", "budget"):
            state.finished = not (state.epoch < cfg.epochs and state.elapsed < cfg.max_minutes * 60.0)
        logger.info(
            "resumed from %s at epoch %d (best %s %.4f)%s",
            self.ckpt_dir,
            state.epoch,
            cfg.metric,
            state.best_metric,
            ", already finished" if state.finished else "",
        )
        return True

    def validate_start(self, validate: Validate) -> None:
        """Epoch 0: the untrained model's validation, kept as the best so far."""
        t_val = time.perf_counter()
        val0 = self._validate(validate)
        self.state.elapsed += time.perf_counter() - t_val
        self.state.history.append({"epoch": 0, "step": 0, "steps": 0, "loss": None, "train_s": 0.0, "val": val0})
        self.state.best_metric, self.state.best_epoch = val0[self.cfg.metric], 0
        self._keep_best(0)
        logger.info("epoch 0 (before training): val %s", _fmt_metrics(val0))

    def done(self) -> bool:
        """Whether the run is over before starting another epoch (finished, epoch limit or budget)."""
        state = self.state
        if not state.finished and state.epoch >= self.cfg.epochs:
            state.finished, state.stop_reason = True, "max_epochs"
        elif not state.finished and state.elapsed >= self.cfg.max_minutes * 60.0:
            state.finished, state.stop_reason = True, "budget"
        return state.finished

    def epoch(
        self,
        batches: Callable[[int], Iterable[BatchT]],
        n_batches: int,
        step: Step[BatchT],
        validate: Validate,
        schedule: Schedule | None,
    ) -> None:
        """Train one epoch, validate when due, record it, decide whether to stop, checkpoint."""
        cfg, state = self.cfg, self.state
        epoch = state.epoch + 1
        self.model.train()
        t0 = time.perf_counter()
        start_elapsed = state.elapsed
        deadline = t0 + cfg.max_minutes * 60.0 - start_elapsed  # perf_counter() at which the budget runs out
        total, steps, cut = self._train(epoch, batches, n_batches, step, schedule, deadline)
        train_s = time.perf_counter() - t0
        epoch_lr = float(self.optimizer.param_groups[0]["lr"])
        val: dict[str, float] | None = None
        if steps and (epoch % cfg.eval_every == 0 or cut or epoch >= cfg.epochs):
            val = self._validate(validate)
        state.elapsed = start_elapsed + time.perf_counter() - t0
        state.epoch = epoch
        loss_mean = total / max(steps, 1)
        if val is not None:
            self._score(epoch, val)
        state.history.append(
            {
                "epoch": epoch,
                "step": self.global_step,
                "loss": round(loss_mean, 5),
                "train_s": round(train_s, 2),
                "lr": epoch_lr,
                "val": val,
                "steps": steps,
            }
        )
        logger.info(
            "epoch %d: %d steps (total %d), loss %.4f, lr %.2e, val %s, %.1fs (%.1fs training)%s%s",
            epoch,
            steps,
            self.global_step,
            loss_mean,
            epoch_lr,
            _fmt_metrics(val) if val is not None else "-",
            time.perf_counter() - t0,
            train_s,
            " [best]" if val is not None and state.best_epoch == epoch else "",
            " [budget reached]" if cut else "",
        )
        if cut:
            state.finished, state.stop_reason = True, "budget"
        elif state.bad_evals >= cfg.patience:
            state.finished, state.stop_reason = True, "early_stop"
        elif epoch >= cfg.epochs:
            state.finished, state.stop_reason = True, "max_epochs"
        if self.ckpt_dir is not None:
            save_checkpoint(self.ckpt_dir, self.model, self.optimizer, state)

    def _train(
        self,
        epoch: int,
        batches: Callable[[int], Iterable[BatchT]],
        n_batches: int,
        step: Step[BatchT],
        schedule: Schedule | None,
        deadline: float,
    ) -> tuple[float, int, bool]:
        """The steps of one epoch until its batches run out or ``time.perf_counter()`` reaches
        ``deadline`` (the budget). -> (summed loss, steps, whether the budget cut the epoch)"""
        cfg, optimizer = self.cfg, self.optimizer
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        total, steps = 0.0, 0
        bar = tqdm(batches(epoch), total=n_batches, desc=f"epoch {epoch}", leave=False, disable=not cfg.progress)
        try:
            for batch in bar:
                if schedule is not None:
                    schedule(self.global_step, optimizer)
                optimizer.zero_grad(set_to_none=True)
                loss = step(self.model, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss at epoch {epoch}, step {steps}")
                if loss.requires_grad:  # a plain loss; a gradient-caching step has back-propagated already
                    loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
                optimizer.step()
                total += float(loss.detach())
                steps += 1
                self.global_step += 1
                if steps % 20 == 0 or schedule is not None:
                    bar.set_postfix(loss=f"{total / steps:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
                if time.perf_counter() >= deadline:
                    return total, steps, True
        finally:
            bar.close()
        return total, steps, False

    def _validate(self, validate: Validate) -> dict[str, float]:
        self.model.eval()
        val = validate(self.model)
        self.model.train()
        return val

    def _score(self, epoch: int, val: dict[str, float]) -> None:
        """Keep the weights of a new best epoch; count (and, with plateau_factor, act on) one without gain."""
        state, score = self.state, val[self.cfg.metric]
        if score > state.best_metric:
            state.best_metric, state.best_epoch, state.bad_evals = score, epoch, 0
            self._keep_best(epoch)
            return
        state.bad_evals += 1
        if self.cfg.plateau_factor != 1.0:
            for group in self.optimizer.param_groups:
                group["lr"] *= self.cfg.plateau_factor

    def _keep_best(self, epoch: int) -> None:
        self.best_weights = cpu_state_dict(self.model)
        if self.ckpt_dir is not None:
            meta = {"epoch": epoch, self.cfg.metric: self.state.best_metric}
            save_weights(self.ckpt_dir / BEST_NAME, self.best_weights, meta)

    def finish(self, resumed_from: int) -> FitResult:
        """Restore the best weights, log the outcome. -> the run's result"""
        state = self.state
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        self.model.eval()
        logger.info(
            "training stopped (%s) after %d epochs, %.0fs; best %s %.4f at epoch %d",
            state.stop_reason,
            state.epoch,
            state.elapsed,
            self.cfg.metric,
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


def _fmt_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


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


BATCHING_MODES = ("positions", "shuffle")


class SequenceBatches:
    """Shuffled batches of training examples, each padded to its longest example.

    ``mode="shuffle"``: plain shuffled batches of ``batch_size`` examples. One long
    example pads the whole batch to its length, so on short-sequence data most of the
    tower's compute is padding.

    ``mode="positions"``: examples are shuffled, sorted by length within windows of
    ``window`` nominal batches, and cut into batches of about ``batch_size`` x the mean
    example length padded positions (many short examples or a few long ones); the
    batches are shuffled again. Every batch then holds about as many positions as a
    nominal one, so a per-batch mean loss still weighs every position alike (sorting
    into fixed-size batches would not: a batch of 2-item sequences would give each of
    its positions ~25x the weight of one in a batch of 50-item sequences), while
    padding nearly disappears.
    """

    def __init__(
        self,
        train: Sequence[Sequence[int]],
        max_len: int,
        batch_size: int,
        *,
        seed: int = 0,
        mode: str = "positions",
        window: int = 32,
        device: torch.device | str = "cpu",
    ) -> None:
        self.examples = training_examples(train, max_len)
        if not self.examples:
            raise ValueError("no training sequence has 2 or more items")
        if mode not in BATCHING_MODES:
            raise ValueError(f"unknown batching mode {mode!r} (known: {', '.join(BATCHING_MODES)})")
        if window < 1:
            raise ValueError(f"window must be >= 1 batch, got {window}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = np.array([len(x) for x, _ in self.examples])
        self.batch_size = batch_size
        self.seed = seed
        self.mode = mode
        self.window = window
        self.device = torch.device(device)
        # Padded positions a "positions" batch may hold: a nominal batch's worth of real positions.
        self.positions_per_batch = max(batch_size * float(self.lengths.mean()), float(self.lengths.max()))

    def __len__(self) -> int:
        """Batches per epoch (nominal in "positions" mode, where it varies by a few per epoch)."""
        return math.ceil(len(self.examples) / self.batch_size)

    @property
    def n_positions(self) -> int:
        return int(self.lengths.sum())

    def epoch(self, epoch: int) -> Iterator[SeqBatch]:
        rng = np.random.default_rng((self.seed, epoch))
        order = rng.permutation(len(self.examples))
        if self.mode == "shuffle":
            chunks = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        else:
            chunks = []
            span = self.batch_size * self.window
            for start in range(0, len(order), span):
                part = order[start : start + span]
                chunks += self._cut(part[np.argsort(self.lengths[part], kind="stable")])
        for j in rng.permutation(len(chunks)):
            yield self.collate(chunks[j])

    def _cut(self, part: np.ndarray) -> list[np.ndarray]:
        """Examples sorted by length -> batches of at most ``positions_per_batch`` padded positions."""
        out: list[np.ndarray] = []
        lo = 0
        for i in range(len(part)):
            # Sorted ascending, so the newest example is the longest: the batch pads to its length.
            if i > lo and (i - lo + 1) * int(self.lengths[part[i]]) > self.positions_per_batch:
                out.append(part[lo:i])
                lo = i
        out.append(part[lo:])
        return out

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
