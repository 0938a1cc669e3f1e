"""`recsvc-train encoder-results`: held-out title -> document retrieval of the base encoder and a
fine-tuned run (:mod:`training.encoder.heldout`), written as JSON rows into a results folder.

    recsvc-train encoder-results --data ../shared/data/Industrial --run var/encoder/Industrial --out var/results
    recsvc-train encoder-results --data ../shared/data/Industrial --run var/encoder/Industrial --update-docs

``--update-docs`` writes the repository's own results (``docs/results``) and re-renders the encoder
section of ``docs/RESULTS.md`` (:mod:`training.reports.encoder`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from training.encoder.heldout import DEFAULT_CACHE_DIR, SPLIT_FILE, ItemSplit, K, evaluate_heldout, merge_rows
from training.reports.encoder import RESULTS_JSON, RUN_INFO_JSON
from training.reports.encoder import render as render_encoder_section

logger = logging.getLogger(__name__)


def write_encoder_results(
    data_dir: Path,
    run_dir: Path,
    *,
    max_length: int = 256,
    query_max_length: int = 32,
    batch_size: int = 64,
    device: str = "cpu",
    model_name: str = "finetuned",
    results_dir: Path = Path("var/results"),
    results_doc: Path | None = None,
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
    base_model_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Evaluate base and the run's fine-tuned encoder on the run's held-out split; write the JSON rows and the
    run's info into ``results_dir`` and, with ``results_doc``, re-render that page's encoder section from it.

    ``base_model_dir``: the model the run started from (``None``: all-MiniLM-L6-v2).
    """
    from training.data.loader import load_dataset

    info_path = run_dir / "train_info.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path} not found: run `recsvc-train finetune-encoder --out {run_dir}` first")
    info = json.loads(info_path.read_text())
    ds = load_dataset(data_dir, require_sequences=False, allow_empty_titles=True)
    # The folder holds one fine-tuning write-up (the run's info and its plot): another dataset's is never replaced.
    stored = results_dir / RUN_INFO_JSON
    other = json.loads(stored.read_text()).get("dataset") if stored.is_file() else None
    if other not in (None, ds.name):
        raise ValueError(f"{results_dir} holds the {other} encoder write-up; give {ds.name} another --out")
    split = ItemSplit.load(run_dir / SPLIT_FILE)
    rows: list[dict[str, Any]] = []
    models = (("base", base_model_dir, 0.0), (model_name, run_dir / "model", info["train_seconds"]))
    for name, model_dir, seconds in models:
        for r in evaluate_heldout(
            ds.items,
            split,
            model_dir,
            max_length=max_length,
            query_max_length=query_max_length,
            batch_size=batch_size,
            cache_dir=cache_dir,
            device=device,
        ):
            rows.append(
                {
                    "dataset": ds.name,
                    "model": name,
                    "pool": r.pool,
                    "recall@10": round(r.metrics[f"recall@{K}"], 4),
                    "ndcg@10": round(r.metrics[f"ndcg@{K}"], 4),
                    "mrr": round(r.metrics["mrr"], 4),
                    "n_test_items": r.n_test_items,
                    "n_candidates": r.n_candidates,
                    "train_seconds": seconds,
                }
            )
    results_dir.mkdir(parents=True, exist_ok=True)
    all_rows = merge_rows(results_dir / RESULTS_JSON, rows, ("dataset", "model", "pool"))
    (results_dir / RESULTS_JSON).write_text(json.dumps(all_rows, indent=2) + "\n")
    (results_dir / RUN_INFO_JSON).write_text(json.dumps(info, indent=2) + "\n")
    if results_doc is not None:
        render_encoder_section(results_dir, results_doc)
        logger.info("rendered the encoder section of %s", results_doc)
    return rows
