"""Train the sequential recommender and write its serving artifacts.

Writes into ``out_dir`` (= ``<artifact root>/seqrec``):

    user_tower.onnx       item_reps float32 [B, L, D] (left-padded) + mask int64 [B, L] -> user [B, D]
    id_embeddings.npy     [N, D] float32; zero rows for items never trained (and all zero when use_id is off)
    text_projection.npz   W [T, D], b [D] float32 (zeros when use_text is off), norm [] (item_norm; 0 = off)
    profile_projection.npz  W [P, D], b [D], mean [P] float32 (only with use_profile; see service/core/profiles.py)
    last.pt / best.pt     torch checkpoints (resumable run state / best weights)

Serving rebuilds item vectors with ``service.core.seqrec.fuse_item_vectors`` and
runs the ONNX tower (``service.recommender.dense.SeqRecRuntime``); the job checks
the exported graph against torch before it returns.
"""

from __future__ import annotations

import copy
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

from service.core.manifest import SeqRecSpec
from service.core.seqrec import ColdIdRule, fill_cold_ids
from training.checkpoint import BEST_NAME, cpu_state_dict, save_weights
from training.config import SeqRecConfig
from training.data.split import EvalCase, Split, train_item_counts
from training.loop import FitResult, LoopConfig, SeqBatch, SequenceBatches, fit, history_tensors, resolve_device
from training.losses import full_softmax_ce
from training.metrics import Case, PopularityModel, evaluate
from training.models.item_encoders import CodeItemEncoder, TextAdaptorItemEncoder
from training.models.pq import train_pq
from training.models.seqrec import FusedItemEncoder, ItemEncoder, LastStateTower, SeqRec

logger = logging.getLogger(__name__)

DEFAULT_TEXT_DIM = 384  # all-MiniLM-L6-v2; only used for the zero projection of an ID-only model
ONNX_PARITY_MAX_ABS = 1e-4
USER_TOWER = "user_tower.onnx"
ID_EMBEDDINGS = "id_embeddings.npy"
TEXT_PROJECTION = "text_projection.npz"
PROFILE_PROJECTION = "profile_projection.npz"


@dataclass
class SeqRecResult:
    spec: SeqRecSpec
    metrics: dict[str, Any]
    train_seconds: float
    # Path (relative to the artifact root) of profile_projection.npz when trained with profiles.
    profile_projection: str | None = None


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


def variant_name(cfg: SeqRecConfig) -> str:
    if cfg.item_encoder != "fused":
        return cfg.item_encoder
    return "id+text" if cfg.use_id and cfg.use_text else ("id" if cfg.use_id else "text")


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


def export_user_tower(model: SeqRec, path: Path, opset: int = 17) -> Path:
    """Export the user tower (last state) to ONNX from a CPU deep copy; ``model`` is untouched."""
    wrapper = LastStateTower(copy.deepcopy(model.tower).cpu()).eval()
    d, length = model.tower.dim, model.max_len
    reps = torch.randn(2, length, d)  # [B, L, D]
    mask = torch.ones(2, length, dtype=torch.int64)
    mask[1, : length // 2] = 0  # one left-padded row, so padding paths are traced
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        wrapper,
        (reps, mask),
        str(path),
        input_names=["item_reps", "mask"],
        output_names=["user"],
        dynamic_axes={"item_reps": {0: "batch", 1: "length"}, "mask": {0: "batch", 1: "length"}, "user": {0: "batch"}},
        opset_version=opset,
        dynamo=False,
    )
    return path


def check_onnx_parity(model: SeqRec, path: Path, n: int = 16, seed: int = 0) -> float:
    """Max |ONNX - torch| of the user vector on random histories of varied length."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, model.max_len + 1, size=n)
    lengths[0], lengths[-1] = 1, model.max_len
    histories = [rng.integers(0, model.n_items, size=int(k)) for k in lengths]
    device = next(model.parameters()).device
    ids, mask = history_tensors(histories, model.max_len, device)  # [B, L]
    model.eval()
    with torch.no_grad():
        reps = model.all_item_reps()[ids]  # [B, L, D]
        ref = model.tower.last_state(reps, mask).cpu().numpy()  # [B, D]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(
        ["user"], {"item_reps": reps.cpu().numpy().astype(np.float32), "mask": mask.cpu().numpy().astype(np.int64)}
    )
    return float(np.abs(got - ref).max())


def train_seqrec(
    split: Split,
    text_vectors: np.ndarray | None,
    cfg: SeqRecConfig,
    out_dir: Path,
    *,
    resume: bool = True,
    progress: bool = True,
    profiles: np.ndarray | None = None,
) -> SeqRecResult:
    """Train on ``split.train``, early-stop on validation NDCG@10, evaluate, export.

    ``resume``: continue from ``out_dir/last.pt`` when it was written for the same
    config and data (the wall-clock budget counts the earlier runs too).
    """
    if cfg.item_encoder != "fused":
        raise ValueError(
            "the serving artifacts hold the fused ID + W·text model: "
            f"item_encoder={cfg.item_encoder!r} cannot be exported (train it with training/jobs/bench_seqrec.py)"
        )
    if cfg.use_profile and profiles is None:
        raise ValueError("cfg.use_profile is set but no profile vectors were given (dataset without users.jsonl?)")
    prof = profiles if cfg.use_profile else None  # [U, P] row per split.train entry
    if cfg.use_text and text_vectors is None:
        raise ValueError("cfg.use_text is set but no text vectors were given")
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    fitted = fit_seqrec(split, text_vectors, cfg, out_dir if resume else None, profiles=prof, progress=progress)
    model, result, known = fitted.model, fitted.fit, fitted.known
    counts = train_item_counts(split)  # [N]
    if not resume:  # still leave a checkpoint of the best weights next to the artifacts
        save_weights(out_dir / BEST_NAME, cpu_state_dict(model), {"epoch": result.best_epoch})

    logger.info("seqrec: evaluating on test ...")
    # The restored weights are those of the best validation, whose metrics the loop kept.
    best_val = fitted.best_val()
    val = dict(best_val) if best_val is not None else evaluate_model(model, split.val, profiles=prof)
    rule = cold_id_rule(cfg)
    served = with_cold_ids(model, rule)  # test metrics of the model as served (cold ID rows filled)
    test = evaluate_model(served, split.test, profiles=prof)
    test_default_profile: dict[str, float] | None = None
    if prof is not None:
        # What serving gives a request without a profile: every user gets the mean profile vector.
        mean = prof.mean(axis=0, dtype=np.float64).astype(np.float32)  # [P]
        test_default_profile = evaluate_model(served, split.test, profiles=np.broadcast_to(mean, prof.shape))
    pop = PopularityModel(counts)
    pop_val = evaluate(pop, split.val)
    pop_test = evaluate(pop, split.test)

    # Serving artifacts.
    model.eval()
    with torch.no_grad():
        d = cfg.hidden
        items = model.items
        assert isinstance(items, FusedItemEncoder)
        if cfg.use_id:
            ids = items.id_table().detach().cpu().numpy().astype(np.float32)  # [N, D]
        else:
            ids = np.zeros((split.n_items, d), dtype=np.float32)
        if cfg.use_text:
            assert items.proj is not None
            w = items.proj.weight.detach().cpu().numpy().T.astype(np.float32)  # [T, D]
            b = items.proj.bias.detach().cpu().numpy().astype(np.float32)  # [D]
        else:
            t = text_vectors.shape[1] if text_vectors is not None else DEFAULT_TEXT_DIM
            w, b = np.zeros((t, d), dtype=np.float32), np.zeros(d, dtype=np.float32)
    np.save(out_dir / ID_EMBEDDINGS, ids)
    # "norm": the item_norm the representations are scaled to (0 = raw sums; read by load_item_norm).
    np.savez(out_dir / TEXT_PROJECTION, W=w, b=b, norm=np.float32(cfg.item_norm))
    if prof is not None:
        export_profile_projection(model, prof, out_dir / PROFILE_PROJECTION)
    export_user_tower(model, out_dir / USER_TOWER)
    parity = check_onnx_parity(model, out_dir / USER_TOWER)
    if parity > ONNX_PARITY_MAX_ABS:
        raise RuntimeError(f"exported user tower differs from torch by {parity:.2e} (> {ONNX_PARITY_MAX_ABS})")

    rel = out_dir.name
    spec = SeqRecSpec(
        dim=cfg.hidden,
        max_len=cfg.max_len,
        user_tower=f"{rel}/{USER_TOWER}",
        id_embeddings=f"{rel}/{ID_EMBEDDINGS}",
        text_projection=f"{rel}/{TEXT_PROJECTION}",
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        trained_items=int(known.sum()),
        cold_id_k=rule.k if rule.active else 0,
        cold_id_temperature=rule.temperature,
        cold_id_scale=rule.scale,
    )
    s_per_epoch = fitted.seconds_per_epoch
    metrics: dict[str, Any] = {
        "val": val,
        "test": test,
        "popularity_val": pop_val,
        "popularity_test": pop_test,
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "stop_reason": result.stop_reason,
        "seconds_per_epoch": round(s_per_epoch, 1),
        "onnx_max_abs_diff": parity,
        "variant": variant_name(cfg),
        "history": [
            {"epoch": h["epoch"], "loss": h["loss"], "ndcg@10": (h["val"] or {}).get("ndcg@10")} for h in result.history
        ],
    }
    logger.info(
        "seqrec: val R@10 %.4f NDCG@10 %.4f | test R@10 %.4f NDCG@10 %.4f | popularity test R@10 %.4f (%.0fs)",
        val["recall@10"],
        val["ndcg@10"],
        test["recall@10"],
        test["ndcg@10"],
        pop_test["recall@10"],
        time.perf_counter() - t_start,
    )
    if test_default_profile is not None:
        metrics["test_default_profile"] = test_default_profile
        logger.info(
            "seqrec: test with the default (mean) profile R@10 %.4f NDCG@10 %.4f (own profiles: NDCG@10 %.4f)",
            test_default_profile["recall@10"],
            test_default_profile["ndcg@10"],
            test["ndcg@10"],
        )
    return SeqRecResult(
        spec=spec,
        metrics=metrics,
        train_seconds=result.train_seconds,
        profile_projection=f"{rel}/{PROFILE_PROJECTION}" if prof is not None else None,
    )


def export_profile_projection(model: SeqRec, profiles: np.ndarray, path: Path) -> Path:
    """Write ``model.profile_proj`` as ``W`` [P, D], ``b`` [D] and the mean of ``profiles`` [U, P] as
    ``mean`` [P] (the profile a request without one is served with) to ``path`` (npz)."""
    if model.profile_proj is None:
        raise ValueError("the model was built without user profiles (profile_dim=0)")
    with torch.no_grad():
        weight = model.profile_proj.weight.detach().cpu().double()  # [D, P]
        w = weight.numpy().T.astype(np.float32)  # [P, D]
        # The model projects (p - centre); folded into the bias, serving projects p itself.
        centre = model.profile_mean.detach().cpu().double() if model.profile_mean is not None else None
        bias = model.profile_proj.bias.detach().cpu().double()
        b = (bias - (weight @ centre if centre is not None else 0.0)).numpy().astype(np.float32)  # [D]
    if profiles.ndim != 2 or profiles.shape[1] != w.shape[0]:
        raise ValueError(f"profiles must be [U, {w.shape[0]}], got {profiles.shape}")
    mean = profiles.mean(axis=0, dtype=np.float64).astype(np.float32)  # [P]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, W=w, b=b, mean=mean)
    return path
