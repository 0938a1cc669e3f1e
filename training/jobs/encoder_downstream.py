"""Downstream check of a fine-tuned encoder: sequential recommendation with its item vectors.

``recsvc-train encoder-downstream --data ../shared/data/Scientific --encoder finetuned=var/encoder/Industrial/model``

For each encoder (always ``base`` plus the named ones) the catalog's item texts
(``service.core.items.item_text``, what the artifacts embed) are encoded (cached
under ``var/cache/encoder``), then each text-using sequential model of
``training/jobs/train_seqrec.py`` is trained on the leave-one-out split with early
stopping on validation NDCG@10 and evaluated on test (full ranking). Variants:
``id+text`` (the served fusion model) and ``text`` (no ID embeddings: item
representations come from the text vectors alone, so the encoder matters most).
Each (encoder, variant) is trained with every seed in ``seeds``; rows
``{dataset, encoder, seq_model, recall@10, ndcg@10}`` hold the means over seeds (plus
their standard deviations and the seeds) and are merged into
``docs/results/encoder_downstream.json``. The encoder must not have been trained on
this dataset's items (``finetune-encoder --exclude-titles-from``).
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
from training.config import SeqRecConfig
from training.data.loader import load_dataset
from training.data.split import leave_one_out
from training.jobs.eval_encoder import DEFAULT_CACHE_DIR, DOWNSTREAM_JSON, _merge_rows, encode_cached, model_fingerprint
from training.models.text_encoder import TextEncoder, load_tokenizer

logger = logging.getLogger(__name__)

SEQ_VARIANTS: dict[str, dict[str, Any]] = {
    "id+text": {"use_id": True, "use_text": True},
    "text": {"use_id": False, "use_text": True},
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
    results_dir: Path = Path("docs/results"),
    write: bool = True,
) -> list[dict[str, Any]]:
    """Train and test each sequential variant with each encoder's item vectors; returns the rows."""
    from training.jobs.train_seqrec import evaluate_model, fit_seqrec

    unknown = [m for m in seq_models if m not in SEQ_VARIANTS]
    if unknown:
        raise ValueError(f"unknown seq model(s) {unknown}; known: {', '.join(SEQ_VARIANTS)}")
    ds = load_dataset(data_dir, allow_empty_titles=True)
    split = leave_one_out(ds)
    texts = [item_text(it) for it in ds.items]
    base_cfg = seq_cfg or SeqRecConfig()
    rows: list[dict[str, Any]] = []
    for enc_name, model_dir in encoders.items():
        model = TextEncoder.from_pretrained(model_dir)
        tokenizer = load_tokenizer(model_dir)
        vectors = encode_cached(
            model,
            tokenizer,
            texts,
            model_key=model_fingerprint(model_dir),
            max_length=max_length,
            batch_size=batch_size,
            cache_dir=cache_dir,
        )  # [N, H]
        del model
        for seq_name in seq_models:
            t0 = time.perf_counter()
            per_seed: list[dict[str, float]] = []
            epochs: list[int] = []
            for seed in seeds:
                cfg = dataclasses.replace(base_cfg, seed=seed, **SEQ_VARIANTS[seq_name])
                fitted = fit_seqrec(split, vectors, cfg, None, progress=True)
                with torch.no_grad():
                    per_seed.append(evaluate_model(fitted.model, split.test))
                epochs.append(fitted.fit.epochs)
            recall = np.array([m["recall@10"] for m in per_seed])  # [S]
            ndcg = np.array([m["ndcg@10"] for m in per_seed])  # [S]
            row = {
                "dataset": ds.name,
                "encoder": enc_name,
                "seq_model": seq_name,
                "recall@10": round(float(recall.mean()), 4),
                "ndcg@10": round(float(ndcg.mean()), 4),
                "recall@10_std": round(float(recall.std()), 4),
                "ndcg@10_std": round(float(ndcg.std()), 4),
                "seeds": list(seeds),
                "epochs": epochs,
                "seconds": round(time.perf_counter() - t0, 1),
            }
            logger.info("downstream %s", row)
            rows.append(row)
    if write:
        results_dir.mkdir(parents=True, exist_ok=True)
        path = results_dir / DOWNSTREAM_JSON
        merged = _merge_rows(path, rows, ("dataset", "encoder", "seq_model"))
        path.write_text(json.dumps(merged, indent=2) + "\n")
        logger.info("wrote %s", path)
    return rows
