"""Downstream checks of fine-tuned encoders: sequential recommendation with their item vectors,
and the semantic-ID collision rate of their vectors.

``recsvc-train encoder-downstream --data ../shared/data/Scientific --encoder finetuned=var/encoder/Industrial/model``
``recsvc-train encoder-collisions --data ../shared/data/Scientific --encoder finetuned=var/encoder/Industrial/model``

For each encoder (always ``base`` plus the named ones) the catalog's item texts
(``service.core.items.item_text``, what the artifacts embed) are encoded (cached
under ``var/cache/encoder``), then each text-using sequential model of
``training.seqrec.fit.fit_seqrec`` is trained on the leave-one-out split with early
stopping on validation NDCG@10 and evaluated on test (full ranking). Variants:
``id+text`` (the served fusion model), ``text`` (no ID embeddings: item
representations come from the text vectors alone) and ``text_moe`` (text only,
through the whitening mixture-of-experts adaptor: the encoder matters most).
Each (encoder, variant) is trained with every seed in ``seeds``; rows
``{dataset, encoder, seq_model, recall@10, ndcg@10}`` hold the means over seeds (plus
their standard deviations and the seeds) and are merged into
``docs/results/encoder_downstream.json``. The encoder must not have been trained on
this dataset's items (``finetune-encoder --exclude-titles-from``), or, for a
behaviour-aligned encoder (``objective: behaviour``), only on its leave-one-out
*training* sequences (never the validation / test targets scored here).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.core.items import item_text
from training.config import EmbedItemsConfig, SemanticIdConfig, SeqRecConfig
from training.data.loader import load_dataset
from training.data.split import leave_one_out
from training.encoder.cache import cached_text_vectors
from training.encoder.heldout import DEFAULT_CACHE_DIR, merge_rows
from training.reports.encoder import COLLISIONS_JSON, DOWNSTREAM_JSON
from training.reports.encoder import render as render_encoder_section

logger = logging.getLogger(__name__)

SEQ_VARIANTS: dict[str, dict[str, Any]] = {
    "id+text": {"item_encoder": "fused", "use_id": True, "use_text": True},  # bench-seqrec's "fusion"
    "text": {"item_encoder": "fused", "use_id": False, "use_text": True},
    # text only through a whitening mixture-of-experts adaptor (bench-seqrec's "text_moe", UniSRec style)
    "text_moe": {"item_encoder": "text_moe"},
}


def _item_vectors(
    model_dir: Path | None, texts: list[str], max_length: int, batch_size: int, cache_dir: Path | None
) -> np.ndarray:
    """Item vectors of ``texts`` by the encoder in ``model_dir`` (None: base model), cached on disk. -> [N, H]"""
    cfg = EmbedItemsConfig(batch_size=batch_size, max_length=max_length)
    return cached_text_vectors(texts, cache_dir, cfg, model_dir)


def encoder_provenance(model_dir: Path | None) -> dict[str, Any]:
    """How an encoder was made, from the ``train_info.json`` beside its model folder (fine-tuning runs)."""
    if model_dir is None:
        return {"encoder_objective": "none (base all-MiniLM-L6-v2)"}
    info_path = Path(model_dir).parent / "train_info.json"
    if not info_path.is_file():
        return {"encoder_objective": "unknown"}
    info = json.loads(info_path.read_text())
    return {
        "encoder_objective": str(info.get("objective", "metadata")),
        "encoder_trained_on": str(info.get("dataset", "?")),
        "encoder_train_seconds": info.get("train_seconds"),
    }


def encoder_downstream(
    data_dir: Path,
    encoders: dict[str, Path | None],
    *,
    seq_models: Sequence[str] = ("id+text", "text"),
    seeds: Sequence[int] = (0,),
    seq_cfg: SeqRecConfig | None = None,
    max_length: int = 128,
    batch_size: int = 64,
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
    results_dir: Path = Path("var/results"),
    write: bool = True,
    results_doc: Path | None = None,
    cold_frac: float = 0.0,
) -> list[dict[str, Any]]:
    """Train and test each sequential variant with each encoder's item vectors; returns the rows.

    ``cold_frac > 0``: each seed hides that share of the items from training (a seeded draw per seed,
    ``bench_seqrec.hide_items``), the models are scored as served (untrained ID rows borrowed by text,
    ``cold_id_*``), and the rows (seq model ``"<variant>, <pct>% cold"``) add ``cold_recall@10`` /
    ``cold_ndcg@10`` (test cases whose target is a hidden item) and ``warm_recall@10``: where item
    vectors matter most, since those items are known by their text alone."""
    from training.evaluation.prior import model_ranks
    from training.evaluation.protocols import cold_metrics, hide_items
    from training.metrics import metrics_from_ranks
    from training.seqrec.fit import fit_seqrec
    from training.seqrec.model import cold_id_rule, with_cold_ids

    unknown = [m for m in seq_models if m not in SEQ_VARIANTS]
    if unknown:
        raise ValueError(f"unknown seq model(s) {unknown}; known: {', '.join(SEQ_VARIANTS)}")
    ds = load_dataset(data_dir, allow_empty_titles=True)
    split = leave_one_out(ds)
    texts = [item_text(it) for it in ds.items]
    base_cfg = seq_cfg or SeqRecConfig()
    rows: list[dict[str, Any]] = []
    for enc_name, model_dir in encoders.items():
        vectors = _item_vectors(model_dir, texts, max_length, batch_size, cache_dir)  # [N, H]
        for seq_name in seq_models:
            t0 = time.perf_counter()
            per_seed: list[dict[str, Any]] = []
            epochs: list[int] = []
            for seed in seeds:
                cfg = dataclasses.replace(base_cfg, seed=seed, **SEQ_VARIANTS[seq_name])
                run_split, cold = hide_items(split, cold_frac, seed) if cold_frac > 0 else (split, None)
                fitted = fit_seqrec(run_split, vectors, cfg, None, exclude=cold, progress=True)
                with torch.no_grad():
                    served = with_cold_ids(fitted.model, cold_id_rule(cfg))
                    ranks = model_ranks(served, run_split.test)
                m: dict[str, Any] = dict(metrics_from_ranks(ranks))
                if cold is not None:
                    m |= {f"cold:{k}": v for k, v in cold_metrics(ranks, cold, run_split.test).items()}
                per_seed.append(m)
                epochs.append(fitted.fit.epochs)
            recall = np.array([m["recall@10"] for m in per_seed])  # [S]
            ndcg = np.array([m["ndcg@10"] for m in per_seed])  # [S]
            cold_cols: dict[str, Any] = {}
            if cold_frac > 0:
                cold_cols = {"cold_frac": cold_frac}
                for k in ("cold_recall@10", "cold_ndcg@10", "warm_recall@10"):
                    vals = [m[f"cold:{k}"] for m in per_seed if m[f"cold:{k}"] is not None]
                    cold_cols[k] = round(float(np.mean(vals)), 4) if vals else None
            row = {
                "dataset": ds.name,
                "encoder": enc_name,
                "seq_model": seq_name if cold_frac <= 0 else f"{seq_name}, {cold_frac:.0%} cold",
                **cold_cols,
                "recall@10": round(float(recall.mean()), 4),
                "ndcg@10": round(float(ndcg.mean()), 4),
                "recall@10_std": round(float(recall.std()), 4),
                "ndcg@10_std": round(float(ndcg.std()), 4),
                "seeds": list(seeds),
                "epochs": epochs,
                "seq_minutes": cfg.max_minutes,
                "max_length": max_length,
                **encoder_provenance(model_dir),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            logger.info("downstream %s", row)
            rows.append(row)
            if write:  # after every row: an interrupted run keeps what it finished
                results_dir.mkdir(parents=True, exist_ok=True)
                path = results_dir / DOWNSTREAM_JSON
                merged = merge_rows(path, [row], ("dataset", "encoder", "seq_model"))
                path.write_text(json.dumps(merged, indent=2) + "\n")
                logger.info("wrote %s", path)
    if write and results_doc is not None:
        render_encoder_section(results_dir, results_doc)
        logger.info("rewrote the encoder section of %s", results_doc)
    return rows


# ------------------------------------------------------------------ semantic-ID collisions


def collision_rates(codes: np.ndarray) -> float:
    """Share of items whose code tuple (one row of ``codes`` [N, L]) is held by another item too."""
    if codes.ndim != 2 or len(codes) == 0:
        raise ValueError(f"codes must be a non-empty [N, L] matrix, got {codes.shape}")
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return float((counts[inverse.reshape(-1)] > 1).mean())


def encoder_collisions(
    data_dir: Path,
    encoders: dict[str, Path | None],
    *,
    sid_cfg: SemanticIdConfig | None = None,
    seeds: Sequence[int] = (0,),
    max_length: int = 128,
    batch_size: int = 64,
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
    results_dir: Path = Path("var/results"),
    write: bool = True,
    results_doc: Path | None = None,
) -> list[dict[str, Any]]:
    """Semantic-ID collision rate per encoder: train the RQ-VAE (``training/semantic_ids/build.py``) on each
    encoder's item vectors and report the share of items whose ``n_levels`` codes (the semantic ID
    before its collision digit) are shared with another item -- with nearest-codeword codes and after
    ``balance_last_level``. Rows hold means (and std) over ``seeds`` of the RQ-VAE; merged into
    ``docs/results/encoder_collisions.json``.
    """
    from training.semantic_ids.build import balance_last_level, codec_from_model, train_rqvae

    base_sid = sid_cfg or SemanticIdConfig()
    ds = load_dataset(data_dir, require_sequences=False, allow_empty_titles=True)
    texts = [item_text(it) for it in ds.items]
    rows: list[dict[str, Any]] = []
    for enc_name, model_dir in encoders.items():
        vectors = _item_vectors(model_dir, texts, max_length, batch_size, cache_dir)  # [N, H]
        t0 = time.perf_counter()
        nearest: list[float] = []
        balanced: list[float] = []
        usage: list[list[float]] = []
        for seed in seeds:
            cfg = dataclasses.replace(base_sid, seed=seed)
            rq, _, _ = train_rqvae(vectors, cfg)
            codec = codec_from_model(rq)
            codes = codec.encode(vectors)  # [N, L]
            nearest.append(collision_rates(codes))
            balanced.append(collision_rates(balance_last_level(codec, vectors, codes)))
            usage.append([len(np.unique(codes[:, lv])) / cfg.codebook_size for lv in range(cfg.n_levels)])
        row = {
            "dataset": ds.name,
            "encoder": enc_name,
            "n_items": ds.n_items,
            "layout": f"{base_sid.n_levels} x {base_sid.codebook_size}",
            "collision_rate": round(float(np.mean(nearest)), 4),
            "collision_rate_std": round(float(np.std(nearest)), 4),
            "collision_rate_balanced": round(float(np.mean(balanced)), 4),
            "collision_rate_balanced_std": round(float(np.std(balanced)), 4),
            "codebook_usage": [round(float(u), 4) for u in np.mean(np.array(usage), axis=0)],
            "seeds": list(seeds),
            "rqvae_epochs": base_sid.epochs,
            "max_length": max_length,
            "seconds": round(time.perf_counter() - t0, 1),
            **encoder_provenance(model_dir),
        }
        logger.info("collisions %s", row)
        rows.append(row)
    if write:
        results_dir.mkdir(parents=True, exist_ok=True)
        path = results_dir / COLLISIONS_JSON
        merged = merge_rows(path, rows, ("dataset", "encoder"))
        path.write_text(json.dumps(merged, indent=2) + "\n")
        logger.info("wrote %s", path)
        if results_doc is not None:
            render_encoder_section(results_dir, results_doc)
            logger.info("rewrote the encoder section of %s", results_doc)
    return rows
