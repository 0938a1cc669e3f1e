"""Fitting a sequential model on a leave-one-out split: its batches, loss step and validation, handed to
the one training loop (``training.loop.fit``: epochs, budget, early stopping, best weights)."""

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from training.config import SeqRecConfig
from training.data.split import EvalCase, Split, train_item_counts
from training.loop import FitResult, LoopConfig, SeqBatch, SequenceBatches, fit, history_tensors, resolve_device
from training.losses import full_softmax_ce
from training.metrics import Case, evaluate
from training.models.seqrec import SeqRec
from training.seqrec.model import build_model, variant_name

logger = logging.getLogger(__name__)


def loop_config(cfg: SeqRecConfig, *, progress: bool = True) -> LoopConfig:
    return LoopConfig(
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        epochs=cfg.epochs,
        max_minutes=cfg.max_minutes,
        patience=cfg.patience,
        eval_every=cfg.eval_every,
        seed=cfg.seed,
        device=cfg.device,
        progress=progress,
    )


class ProfileBatch(NamedTuple):
    items: torch.Tensor  # [B, L] long, left-padded
    mask: torch.Tensor  # [B, L] bool
    targets: torch.Tensor  # [B, L] long
    profile: torch.Tensor  # [B, P] float, the user's embedded profile sentence


class ProfileSequenceBatches(SequenceBatches):
    """:class:`SequenceBatches` that also carries each example's user profile vector."""

    def __init__(
        self,
        train: Sequence[Sequence[int]],
        profiles: np.ndarray,
        max_len: int,
        batch_size: int,
        *,
        seed: int = 0,
        mode: str = "positions",
        window: int = 32,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(train, max_len, batch_size, seed=seed, mode=mode, window=window, device=device)
        if profiles.ndim != 2 or profiles.shape[0] != len(train):
            raise ValueError(f"profiles must be [{len(train)} users, P], got {profiles.shape}")
        # training_examples keeps the sequences with >= 2 items, in order: example j -> user users[j].
        self.users = np.array([u for u, s in enumerate(train) if len(s) >= 2], dtype=np.int64)
        self.profiles = torch.from_numpy(np.ascontiguousarray(profiles, dtype=np.float32))  # [U, P]

    def collate(self, idx: np.ndarray) -> ProfileBatch:  # type: ignore[override]
        base = super().collate(idx)
        profile = self.profiles[torch.from_numpy(self.users[idx])].to(self.device)  # [B, P]
        return ProfileBatch(base.items, base.mask, base.targets, profile)


def text_neighbours(
    text_vectors: np.ndarray, k: int, exclude: np.ndarray | None = None, chunk: int = 1024
) -> npt.NDArray[np.int64]:
    """The ``k`` items whose text is most similar (cosine) to each item's, itself and
    ``exclude``d items left out. text_vectors [N, T] -> [N, k] int64, most similar first."""
    n = text_vectors.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"text negatives: need 1 <= k < number of items ({n}), got {k}")
    t = torch.from_numpy(np.ascontiguousarray(text_vectors, dtype=np.float32))
    t = t / t.norm(dim=1, keepdim=True).clamp(min=1e-12)  # [N, T] unit rows
    banned = torch.zeros(n, dtype=torch.bool) if exclude is None else torch.from_numpy(exclude.astype(bool))
    out = torch.empty(n, k, dtype=torch.int64)
    with torch.no_grad():
        for s in range(0, n, chunk):
            sims = t[s : s + chunk] @ t.T  # [C, N]
            sims[:, banned] = float("-inf")
            rows = torch.arange(s, min(s + chunk, n))
            sims[rows - s, rows] = float("-inf")  # not itself
            out[s : s + chunk] = sims.topk(k, dim=1).indices
    return out.numpy()


class TextNegatives(NamedTuple):
    """Hard negatives by text similarity: each step draws ``k`` of the target's ``pool`` nearest
    text neighbours and adds ``weight`` x a softmax over (target, those negatives) to the loss."""

    pool: torch.Tensor  # [N, P] int64 text neighbours of every item
    k: int
    weight: float


def seqrec_loss(
    model: nn.Module,
    batch: SeqBatch | ProfileBatch,
    exclude: torch.Tensor | None = None,
    text_negatives: TextNegatives | None = None,
) -> torch.Tensor:
    """Full softmax cross-entropy of the next item. ``exclude`` [N] bool: items left out of the
    softmax (hidden cold items: a catalog that does not have them yet cannot rank them low).
    ``text_negatives``: the extra hard-negative term of :class:`TextNegatives`."""
    profile = batch.profile if isinstance(batch, ProfileBatch) else None
    states, table = model(batch.items, batch.mask, profile)  # [B, L, D], [N, D]
    if exclude is None and text_negatives is None:
        return full_softmax_ce(states, batch.targets, batch.mask, table)
    keep = batch.mask > 0  # [B, L]
    picked, targets = states[keep], batch.targets[keep]  # [M, D], [M]
    logits = F.linear(picked, table)  # [M, N]
    if exclude is not None:
        logits = logits.masked_fill(exclude[None, :], float("-inf"))
    loss = F.cross_entropy(logits, targets)
    if text_negatives is not None:
        pool = text_negatives.pool[targets]  # [M, P]
        cols = torch.randint(0, pool.shape[1], (pool.shape[0], text_negatives.k), device=pool.device)  # [M, K]
        cand = torch.cat([targets[:, None], pool.gather(1, cols)], dim=1)  # [M, 1 + K], target first
        hard = logits.gather(1, cand)  # [M, 1 + K]
        zeros = torch.zeros(len(targets), dtype=torch.long, device=targets.device)
        loss = loss + text_negatives.weight * F.cross_entropy(hard, zeros)
    return loss


def evaluate_model(
    model: SeqRec, cases: Sequence[Case], batch_size: int = 256, profiles: np.ndarray | None = None
) -> dict[str, float]:
    """Full-ranking metrics of ``model`` (last state · all item reps) over ``cases``.

    ``profiles`` [U, P]: profile vector per user index (``EvalCase.user``), for models built with profiles.
    """
    model.eval()
    device = next(model.parameters()).device
    # Metrics are means over cases, so order is free: sorting by (truncated) history length
    # makes each batch pad to similar lengths, which cuts tower compute several-fold.
    cases = sorted(cases, key=lambda c: min(len(c.history), model.max_len))
    prof = None if profiles is None else torch.from_numpy(np.ascontiguousarray(profiles, dtype=np.float32))
    with torch.no_grad():
        table = model.all_item_reps()  # [N, D]

        def score(batch: Sequence[Case]) -> torch.Tensor:
            ids, mask = history_tensors([c.history for c in batch], model.max_len, device)  # [B, L]
            p = None
            if prof is not None:
                if not all(isinstance(c, EvalCase) for c in batch):
                    raise ValueError("profiles need EvalCase cases (with a user index)")
                users = torch.tensor([c.user for c in batch if isinstance(c, EvalCase)], dtype=torch.long)
                p = prof[users].to(device)  # [B, P]
            return model.score(ids, mask, table, p)  # [B, N]

        return evaluate(score, cases, batch_size=batch_size)


@dataclass
class FittedSeqRec:
    model: SeqRec
    fit: FitResult
    known: np.ndarray  # [N] 1.0 = item seen in training
    n_batches: int

    @property
    def seconds_per_epoch(self) -> float:
        """Training seconds per full epoch (a budget-cut epoch counts by its steps), this run only."""
        run = self.fit.history[self.fit.resumed_from :]
        steps_run = sum(h["steps"] for h in run)
        return sum(h["train_s"] for h in run) / steps_run * self.n_batches if steps_run else 0.0

    def best_val(self) -> dict[str, float] | None:
        """Validation metrics of the restored (best) epoch, as the loop measured them."""
        return next((h["val"] for h in self.fit.history if h["epoch"] == self.fit.best_epoch and h["val"]), None)


def fit_seqrec(
    split: Split,
    text_vectors: np.ndarray | None,
    cfg: SeqRecConfig,
    ckpt_dir: Path | None = None,
    *,
    profiles: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    progress: bool = True,
) -> FittedSeqRec:
    """Build the model ``cfg`` names and train it on ``split.train`` with early stopping on
    validation NDCG@10; the returned model holds the best validated weights.

    ``profiles`` [U, P] (one row per ``split.train`` entry) is required when ``cfg.use_profile``.
    ``ckpt_dir``: write/resume ``last.pt`` / ``best.pt`` there (None: in memory only).
    ``exclude`` [N] bool: items hidden from training (cold-item evaluation); they must not occur
    in ``split.train`` and are left out of the training softmax.
    """
    needs_text = cfg.use_text or cfg.item_encoder != "fused"
    if needs_text and text_vectors is None:
        raise ValueError(f"cfg.use_text / item_encoder {cfg.item_encoder!r} needs text vectors but none were given")
    if text_vectors is not None and needs_text and text_vectors.shape[0] != split.n_items:
        raise ValueError(f"text_vectors has {text_vectors.shape[0]} rows for {split.n_items} items")
    if cfg.use_profile and profiles is None:
        raise ValueError("cfg.use_profile is set but no profile vectors were given (dataset without users.jsonl?)")
    if not split.val or not split.test:
        raise ValueError("the split has no validation/test cases (every user has fewer than 3 interactions)")
    if exclude is not None:
        if exclude.shape != (split.n_items,):
            raise ValueError(f"exclude must be a [{split.n_items}] bool mask, got shape {exclude.shape}")
        if any(exclude[i] for s in split.train for i in s):
            raise ValueError("exclude names items that occur in the training sequences")
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    counts = train_item_counts(split)  # [N]
    known = (counts > 0).astype(np.float32)
    prof = profiles if cfg.use_profile else None
    model = build_model(
        cfg,
        split.n_items,
        text_vectors if needs_text else None,
        known,
        profile_dim=0 if prof is None else prof.shape[1],
    )
    if prof is not None:
        model.set_profile_mean(np.asarray(prof, dtype=np.float32).mean(0))
    batching: dict[str, Any] = {"seed": cfg.seed, "mode": cfg.batching, "window": cfg.batch_window, "device": device}
    batches: SequenceBatches
    if prof is not None:
        batches = ProfileSequenceBatches(split.train, prof, cfg.max_len, cfg.batch_size, **batching)
    else:
        batches = SequenceBatches(split.train, cfg.max_len, cfg.batch_size, **batching)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(
        "seqrec: %d items (%d trained), %d training sequences, %d positions, %d batches/epoch, %d parameters, "
        "%s%s on %s",
        split.n_items,
        int(known.sum()),
        len(batches.examples),
        batches.n_positions,
        len(batches),
        n_params,
        variant_name(cfg),
        " + profile" if prof is not None else "",
        device,
    )
    val_cases: Sequence[EvalCase] = split.val

    def validate(m: nn.Module) -> dict[str, float]:
        assert isinstance(m, SeqRec)
        return evaluate_model(m, val_cases, profiles=prof)

    exclude_t = None if exclude is None else torch.from_numpy(exclude.astype(bool)).to(device)  # [N]
    negatives: TextNegatives | None = None
    if cfg.text_negatives > 0:
        if text_vectors is None:
            raise ValueError("text_negatives > 0 needs text vectors")
        t0 = time.perf_counter()
        pool = text_neighbours(text_vectors, cfg.text_negative_pool, exclude)  # [N, P]
        negatives = TextNegatives(torch.from_numpy(pool).to(device), cfg.text_negatives, cfg.text_negative_weight)
        logger.info(
            "seqrec: %d text negatives per position from %d text neighbours (%.1fs)",
            cfg.text_negatives,
            cfg.text_negative_pool,
            time.perf_counter() - t0,
        )

    def step_loss(m: nn.Module, batch: SeqBatch | ProfileBatch) -> torch.Tensor:
        return seqrec_loss(m, batch, exclude_t, negatives)

    result = fit(
        model,
        batches.epoch,
        len(batches),
        step_loss,
        validate,
        loop_config(cfg, progress=progress),
        ckpt_dir,
        fingerprint=_fingerprint(cfg, split, text_vectors),
    )
    return FittedSeqRec(model=model, fit=result, known=known, n_batches=len(batches))


def _fingerprint(cfg: SeqRecConfig, split: Split, text_vectors: np.ndarray | None) -> str:
    """What must match for a checkpoint to be resumed (budget/epochs/device may change)."""
    keys = {k: v for k, v in asdict(cfg).items() if k not in {"epochs", "max_minutes", "patience", "device"}}
    h = hashlib.sha256(json.dumps(keys, sort_keys=True).encode())
    h.update(f"{split.n_items}:{len(split.train)}:{sum(len(s) for s in split.train)}".encode())
    for s in split.train[:1000]:
        h.update(np.asarray(s, dtype=np.int64).tobytes())
    if cfg.use_text and text_vectors is not None:
        h.update(np.ascontiguousarray(text_vectors[:256], dtype=np.float32).tobytes())
    return h.hexdigest()[:16]
