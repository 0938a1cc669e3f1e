"""The generative benchmark's JSON results (``generative.json``): one row per (dataset, model), the
model label saying what tells runs apart. A run writes its plain row and, when it picked a prior
weight, the same model decoded with the item -> next item prior; rows of other runs are kept.
:mod:`training.reports.generative` renders them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from training.config import GenRecConfig
from training.genrec.fit import GenRecResult
from training.loop import device_name
from training.semantic_ids.build import SemanticIdResult


def model_name(cfg: GenRecConfig) -> str:
    """The table's model label: architecture and the optimisation settings that tell runs apart."""
    sched = ""
    if cfg.lr_schedule == "cosine":
        sched = f" cosine to 0 over {cfg.epochs} epochs (warmup {cfg.warmup_steps})"
    elif cfg.lr_schedule != "constant":
        sched = f" {cfg.lr_schedule} (warmup {cfg.warmup_steps})"
    name = (
        f"genrec T5 d{cfg.d_model} ff{cfg.d_ff} {cfg.encoder_layers}+{cfg.decoder_layers}L,"
        f" batch {cfg.batch_size}, lr {cfg.lr:g}{sched}, beam {cfg.beam}"
    )
    name += ", one encoder position per item" if cfg.history_input == "items" else ""
    name += ", item ID input" if cfg.item_id_input else ""
    name += " (started from the coded vectors)" if cfg.item_id_input and cfg.item_id_init == "vectors" else ""
    if cfg.distill_weight > 0:
        name += (
            f", distilled from the dense model (λ {cfg.distill_weight:g}, top {cfg.distill_top},"
            f" T {cfg.distill_temperature:g})"
        )
    return name


def prior_alone_fields(metrics: dict[str, Any]) -> dict[str, float]:
    """A result row's prior-alone columns from ``prior_alone_test`` / ``prior_beam_test`` metrics."""
    return {
        f"prior_{kind}_{m}": round(metrics[f"prior_{kind}_test"][m], 4)
        for kind in ("alone", "beam")
        for m in ("recall@10", "ndcg@10")
    }


def result_rows(
    dataset: str,
    cfg: GenRecConfig,
    cf_dim: int,
    sid: SemanticIdResult,
    sid_seconds: float,
    res: GenRecResult,
    device: torch.device,
) -> list[dict[str, Any]]:
    """The run's rows: the model as trained (test metrics of its own decode), then, with a prior picked on
    validation (``res.metrics["prior"]``), the same model decoded with the item -> next item prior.
    ``cf_dim``: the semantic IDs' co-occurrence rank (0 = text only)."""
    test = res.metrics["test"]
    row = {
        "dataset": dataset,
        "model": model_name(cfg) + (f", sids from text + co-occurrence ({cf_dim})" if cf_dim else ""),
        "recall@10": round(test["recall@10"], 4),
        "ndcg@10": round(test["ndcg@10"], 4),
        "recall@5": round(test["recall@5"], 4),
        "ndcg@5": round(test["ndcg@5"], 4),
        "unique_prefix_share": sid.spec.unique_prefix_share,
        "balanced_last_level": sid.spec.balanced_last_level,
        "codebook_usage": sid.spec.codebook_usage,
        "train_seconds": round(res.train_seconds + sid_seconds, 1),
        "genrec_train_seconds": round(res.train_seconds, 1),
        "rqvae_train_seconds": round(sid_seconds, 1),
        "epochs": res.fit.epochs,
        "stop_reason": res.fit.stop_reason,
        "device": str(device),
        "device_name": device_name(device),
        "threads": cfg.threads or torch.get_num_threads(),
    }
    if "distill" in res.metrics:  # distilled from the dense model: the teacher's own validation figure beside it
        row |= {f"distill_{k}": v for k, v in res.metrics["distill"].items()}
    if "prior_alone_test" in res.metrics:  # a model trained next to the prior: the prior by itself beside it
        row |= prior_alone_fields(res.metrics)
    rows = [row]
    prior = res.metrics.get("prior")
    if prior is not None:  # the same trained model, decoded with the item -> next prior
        pt = prior["test"]
        rows.append(
            row
            | {
                "model": row["model"]
                + f", + item→next prior (weight {prior['weight']:g})"
                + (" ‡" if prior["counts"] == "histories" else ""),
                "recall@10": round(pt["recall@10"], 4),
                "ndcg@10": round(pt["ndcg@10"], 4),
                "recall@5": round(pt["recall@5"], 4),
                "ndcg@5": round(pt["ndcg@5"], 4),
                "prior_weight": prior["weight"],
                "prior_counts": prior["counts"],
                "prior_val_ndcg@10": prior["val_ndcg@10"],
            }
            | prior_alone_fields(prior)
        )
    return rows


def write_rows(results_json: Path, new_rows: Sequence[dict[str, Any]]) -> None:
    """Replace the rows of the same (dataset, model) in ``results_json`` (a JSON list), keep the others,
    add the new ones at the end."""
    rows = json.loads(results_json.read_text()) if results_json.is_file() else []
    keys = {(r["dataset"], r["model"]) for r in new_rows}
    rows = [r for r in rows if (r["dataset"], r["model"]) not in keys] + list(new_rows)
    results_json.parent.mkdir(parents=True, exist_ok=True)
    results_json.write_text(json.dumps(rows, indent=2) + "\n")
