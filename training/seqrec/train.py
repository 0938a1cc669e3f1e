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

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.core.manifest import SeqRecSpec
from training.checkpoint import BEST_NAME, cpu_state_dict, save_weights
from training.config import SeqRecConfig
from training.data.split import Split, train_item_counts
from training.metrics import PopularityModel, evaluate
from training.models.seqrec import FusedItemEncoder
from training.seqrec.export import (
    ID_EMBEDDINGS,
    ONNX_PARITY_MAX_ABS,
    PROFILE_PROJECTION,
    TEXT_PROJECTION,
    USER_TOWER,
    check_onnx_parity,
    export_profile_projection,
    export_user_tower,
)
from training.seqrec.fit import evaluate_model, fit_seqrec
from training.seqrec.model import DEFAULT_TEXT_DIM, cold_id_rule, variant_name, with_cold_ids

logger = logging.getLogger(__name__)

logger = logging.getLogger(__name__)


@dataclass
class SeqRecResult:
    spec: SeqRecSpec
    metrics: dict[str, Any]
    train_seconds: float
    # Path (relative to the artifact root) of profile_projection.npz when trained with profiles.
    profile_projection: str | None = None


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
