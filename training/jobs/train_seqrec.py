"""Train the sequential recommender and write its serving artifacts.

Writes into ``out_dir`` (= ``<artifact root>/seqrec``):

    user_tower.onnx       item_reps float32 [B, L, D] (left-padded) + mask int64 [B, L] -> user [B, D]
    id_embeddings.npy     [N, D] float32; zero rows for items never trained (and all zero when use_id is off)
    text_projection.npz   W [T, D], b [D] float32 (zeros when use_text is off)
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
from typing import Any

import numpy as np
import torch
from torch import nn

from service.core.manifest import SeqRecSpec
from training.checkpoint import BEST_NAME, cpu_state_dict, save_weights
from training.config import SeqRecConfig
from training.data.split import EvalCase, Split, train_item_counts
from training.loop import LoopConfig, SeqBatch, SequenceBatches, fit, history_tensors, resolve_device
from training.losses import full_softmax_ce
from training.metrics import Case, PopularityModel, evaluate
from training.models.seqrec import LastStateTower, SeqRec

logger = logging.getLogger(__name__)

DEFAULT_TEXT_DIM = 384  # all-MiniLM-L6-v2; only used for the zero projection of an ID-only model
ONNX_PARITY_MAX_ABS = 1e-4
USER_TOWER = "user_tower.onnx"
ID_EMBEDDINGS = "id_embeddings.npy"
TEXT_PROJECTION = "text_projection.npz"


@dataclass
class SeqRecResult:
    spec: SeqRecSpec
    metrics: dict[str, Any]
    train_seconds: float


def build_model(
    cfg: SeqRecConfig, n_items: int, text_vectors: np.ndarray | None, known: np.ndarray | None = None
) -> SeqRec:
    return SeqRec(
        n_items,
        hidden=cfg.hidden,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        max_len=cfg.max_len,
        dropout=cfg.dropout,
        text_vectors=text_vectors if cfg.use_text else None,
        use_id=cfg.use_id,
        use_text=cfg.use_text,
        known=known,
        id_dropout=cfg.id_dropout,
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


def seqrec_loss(model: nn.Module, batch: SeqBatch) -> torch.Tensor:
    states, table = model(batch.items, batch.mask)  # [B, L, D], [N, D]
    return full_softmax_ce(states, batch.targets, batch.mask, table)


def evaluate_model(model: SeqRec, cases: Sequence[Case], batch_size: int = 256) -> dict[str, float]:
    """Full-ranking metrics of ``model`` (last state · all item reps) over ``cases``."""
    model.eval()
    device = next(model.parameters()).device
    # Metrics are means over cases, so order is free: sorting by (truncated) history length
    # makes each batch pad to similar lengths, which cuts tower compute several-fold.
    cases = sorted(cases, key=lambda c: min(len(c.history), model.max_len))
    with torch.no_grad():
        table = model.all_item_reps()  # [N, D]

        def score(batch: Sequence[Case]) -> torch.Tensor:
            ids, mask = history_tensors([c.history for c in batch], model.max_len, device)  # [B, L]
            return model.score(ids, mask, table)  # [B, N]

        return evaluate(score, cases, batch_size=batch_size)


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
) -> SeqRecResult:
    """Train on ``split.train``, early-stop on validation NDCG@10, evaluate, export.

    ``resume``: continue from ``out_dir/last.pt`` when it was written for the same
    config and data (the wall-clock budget counts the earlier runs too).
    """
    if cfg.use_text and text_vectors is None:
        raise ValueError("cfg.use_text is set but no text vectors were given")
    if text_vectors is not None and cfg.use_text and text_vectors.shape[0] != split.n_items:
        raise ValueError(f"text_vectors has {text_vectors.shape[0]} rows for {split.n_items} items")
    if not split.val or not split.test:
        raise ValueError("the split has no validation/test cases (every user has fewer than 3 interactions)")
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)

    counts = train_item_counts(split)  # [N]
    known = (counts > 0).astype(np.float32)
    model = build_model(cfg, split.n_items, text_vectors, known)
    batches = SequenceBatches(split.train, cfg.max_len, cfg.batch_size, seed=cfg.seed, device=device)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(
        "seqrec: %d items (%d trained), %d training sequences, %d positions, %d batches/epoch, %d parameters, %s on %s",
        split.n_items,
        int(known.sum()),
        len(batches.examples),
        batches.n_positions,
        len(batches),
        n_params,
        "ID+text" if cfg.use_id and cfg.use_text else ("ID" if cfg.use_id else "text"),
        device,
    )
    val_cases: Sequence[EvalCase] = split.val

    def validate(m: nn.Module) -> dict[str, float]:
        assert isinstance(m, SeqRec)
        return evaluate_model(m, val_cases)

    result = fit(
        model,
        batches.epoch,
        len(batches),
        seqrec_loss,
        validate,
        loop_config(cfg, progress=progress),
        out_dir if resume else None,
        fingerprint=_fingerprint(cfg, split, text_vectors),
    )
    if not resume:  # still leave a checkpoint of the best weights next to the artifacts
        save_weights(out_dir / BEST_NAME, cpu_state_dict(model), {"epoch": result.best_epoch})

    logger.info("seqrec: evaluating on test ...")
    # The restored weights are those of the best validation, whose metrics the loop kept.
    best_val = next((h["val"] for h in result.history if h["epoch"] == result.best_epoch and h["val"]), None)
    val = dict(best_val) if best_val is not None else evaluate_model(model, split.val)
    test = evaluate_model(model, split.test)
    pop = PopularityModel(counts)
    pop_val = evaluate(pop, split.val)
    pop_test = evaluate(pop, split.test)

    # Serving artifacts.
    model.eval()
    with torch.no_grad():
        d = cfg.hidden
        if cfg.use_id:
            ids = model.items.id_table().detach().cpu().numpy().astype(np.float32)  # [N, D]
        else:
            ids = np.zeros((split.n_items, d), dtype=np.float32)
        if cfg.use_text:
            assert model.items.proj is not None
            w = model.items.proj.weight.detach().cpu().numpy().T.astype(np.float32)  # [T, D]
            b = model.items.proj.bias.detach().cpu().numpy().astype(np.float32)  # [D]
        else:
            t = text_vectors.shape[1] if text_vectors is not None else DEFAULT_TEXT_DIM
            w, b = np.zeros((t, d), dtype=np.float32), np.zeros(d, dtype=np.float32)
    np.save(out_dir / ID_EMBEDDINGS, ids)
    np.savez(out_dir / TEXT_PROJECTION, W=w, b=b)
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
    )
    # Training seconds per full epoch (a budget-cut epoch counts by its steps), this run only.
    run = result.history[result.resumed_from :]
    steps_run = sum(h["steps"] for h in run)
    s_per_epoch = sum(h["train_s"] for h in run) / steps_run * len(batches) if steps_run else 0.0
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
        "variant": "id+text" if cfg.use_id and cfg.use_text else ("id" if cfg.use_id else "text"),
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
    return SeqRecResult(spec=spec, metrics=metrics, train_seconds=result.train_seconds)
