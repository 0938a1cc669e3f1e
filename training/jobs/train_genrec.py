"""`recsvc-train bench-genrec`: semantic IDs + the generative recommender on one dataset folder.

    recsvc-train bench-genrec --data ../shared/data/Beauty --config training/configs/genrec_beauty.yaml --threads 1
    recsvc-train bench-genrec --render-only        # only re-render the generative section of docs/RESULTS.md

Loads the dataset (leave-one-out split), takes the item text vectors (the text encoder, or an artifact set
of the same dataset with ``--vectors-from``), learns semantic IDs by RQ-VAE (:mod:`training.semantic_ids`),
trains and evaluates the TIGER-style model with the served beam search (:mod:`training.genrec`; the
model lands in ``<work>/genrec``, resumable checkpoints in ``<work>/checkpoints``), replaces its rows in
``docs/results/generative.json`` (:mod:`training.genrec.results`) and re-renders the ``generative``
section of ``docs/RESULTS.md`` from the JSON (:mod:`training.reports.generative`). With ``--hybrid``
also the served dense model and hybrid mode on the same split (:mod:`training.evaluation.hybrid`), an
entry in ``hybrid.json``. The command line is parsed in ``training/cli/genrec.py``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from service.semantic_ids.decoder import GENREC_DIR
from training.config import EmbedItemsConfig, GenRecConfig, SemanticIdConfig
from training.data.loader import Dataset, load_dataset
from training.data.split import leave_one_out
from training.evaluation.hybrid import HybridOptions, run_hybrid, write_hybrid_entry
from training.genrec.distill import check_distill, fit_teacher
from training.genrec.fit import train_genrec
from training.genrec.results import result_rows, write_rows
from training.loop import resolve_device
from training.reports.generative import BEAM_JSON, HYBRID_RESULTS_JSON, RESULTS_JSON, write_generative_section
from training.reports.page import DEFAULT_PATH
from training.semantic_ids.build import build_semantic_ids

logger = logging.getLogger(__name__)


def item_vectors(dataset: Dataset, data_dir: Path, vectors_from: Path | None, threads: int) -> np.ndarray:
    """The items' text vectors [N, F]: those of an artifact set built from the same dataset, or the text encoder's."""
    if vectors_from is None:
        from training.encoder.embed import embed_items

        return embed_items(dataset.items, EmbedItemsConfig(threads=threads))
    ids = json.loads((vectors_from / "items" / "item_ids.json").read_text())
    if ids != dataset.item_ids:
        raise ValueError(f"{vectors_from} was not built from {data_dir} (item ids differ)")
    logger.info("text vectors from %s", vectors_from)
    return np.load(vectors_from / "items" / "text_vectors.npy")


def bench_genrec(
    data_dir: Path,
    sid_cfg: SemanticIdConfig,
    cfg: GenRecConfig,
    *,
    vectors_from: Path | None = None,
    work_dir: Path,
    results_json: Path = RESULTS_JSON,
    results_md: Path | None = None,
    hybrid: HybridOptions | None = None,
    dense_minutes: float = 15.0,
) -> dict[str, Any]:
    """Semantic IDs + genrec on one dataset folder; appends/replaces its rows in ``results_json``
    and rewrites the ``generative`` section of ``results_md`` (default docs/RESULTS.md). With ``hybrid``:
    also the served dense model and hybrid mode on the same split, an entry in ``hybrid.out`` (replaced
    per dataset). With ``cfg.distill_weight`` > 0 the genrec learns from that dense model's scores too
    (:mod:`training.genrec.distill`): it is fitted first (budget ``dense_minutes``; resumed from
    ``work_dir``, so ``--hybrid`` then reuses it). -> the run's (plain) row."""
    check_distill(cfg)  # a bad knob fails before any training
    dataset = load_dataset(data_dir, allow_empty_titles=True)
    split = leave_one_out(dataset)
    vectors = item_vectors(dataset, data_dir, vectors_from, cfg.threads)
    t0 = time.perf_counter()
    sid = build_semantic_ids(vectors, sid_cfg, work_dir, split.train)
    sid_seconds = time.perf_counter() - t0
    teacher = None
    if cfg.distill_weight > 0:
        teacher = fit_teacher(split, vectors, cfg, hybrid.dense_minutes if hybrid else dense_minutes, work_dir)
    res = train_genrec(split, sid.table, cfg, work_dir / GENREC_DIR, work_dir / "checkpoints", sid.inputs, teacher)
    rows = result_rows(dataset.name, cfg, sid_cfg.cf_dim, sid, sid_seconds, res, resolve_device(cfg.device))
    write_rows(results_json, rows)
    if hybrid is not None:
        entry = run_hybrid(hybrid, dataset.name, split, vectors, sid.table, cfg, res, rows, work_dir)
        write_hybrid_entry(hybrid.out, entry)
    hybrid_json = hybrid.out if hybrid is not None else HYBRID_RESULTS_JSON
    write_generative_section(results_json, BEAM_JSON, results_md or DEFAULT_PATH, hybrid_json)
    return rows[0]
