"""The benchmark's JSON results: table rows (``seqrec.json``, one per dataset and model) and per-run
details (``seqrec_runs.json``), merged so one dataset's run keeps the others' rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from training.config import SeqRecConfig
from training.seqrec.registry import DATASETS, LEGACY_SEQREC, MC_SUFFIX, MODELS

ROWS_FILE = "seqrec.json"  # table rows, one per (dataset, model)
RUNS_FILE = "seqrec_runs.json"  # per-run details, keyed "<dataset>/<model>"


def rows_path(out: Path | str) -> Path:
    """The table rows file of the results folder ``out``."""
    return Path(out) / ROWS_FILE


def runs_path(out: Path | str) -> Path:
    """The run details file of the results folder ``out``."""
    return Path(out) / RUNS_FILE


METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")


def aggregate(dataset: str, model: str, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One row of ``seqrec.json`` from the per-seed runs of one model (test metrics)."""
    if not runs:
        raise ValueError(f"no runs for {dataset}/{model}")
    row: dict[str, Any] = {"dataset": dataset, "model": model}
    for m in METRICS:
        row[m] = round(float(np.mean([r["test"][m] for r in runs])), 5)
    r10 = [r["test"]["recall@10"] for r in runs]
    # Sample std over seeds; undefined for one run (null, not 0).
    row["std_recall@10"] = round(float(np.std(r10, ddof=1)), 5) if len(runs) > 1 else None
    row["seeds"] = [int(r["seed"]) for r in runs]
    row["train_seconds"] = round(float(np.mean([r["train_seconds"] for r in runs])), 1)
    row["cold_recall@10"] = None
    return row


ROW_KEYS = (
    "dataset",
    "model",
    "recall@5",
    "recall@10",
    "ndcg@5",
    "ndcg@10",
    "std_recall@10",
    "seeds",
    "train_seconds",
    "cold_recall@10",
)


def read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else default


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def merge_rows(old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace rows by (dataset, model), keep the rest; sorted by table order.

    A new row without a cold figure keeps the old row's ``cold_recall@10``: the cold
    figure always comes from its own run (items hidden), never from the main one.
    """
    by_key = {(r["dataset"], r["model"]): dict(r) for r in old}
    for r in new:
        key = (r["dataset"], r["model"])
        merged = {k: r.get(k) for k in ROW_KEYS}
        if merged["cold_recall@10"] is None and key in by_key:
            merged["cold_recall@10"] = by_key[key].get("cold_recall@10")
        by_key[key] = merged
    model_order = {m: float(i) for i, m in enumerate(MODELS)}
    model_order |= {m + MC_SUFFIX: i + 0.5 for m, i in model_order.items()}
    ds_order = {d: i for i, d in enumerate(DATASETS)}
    return sorted(
        by_key.values(),
        key=lambda r: (ds_order.get(r["dataset"], len(ds_order)), r["dataset"], model_order.get(r["model"], 99.0)),
    )


def compact_run(run: dict[str, Any]) -> dict[str, Any]:
    keep = ("seed", "val", "test", "train_seconds", "epochs", "best_epoch", "stop_reason", "seconds_per_epoch")
    extra = {k: run[k] for k in ("test_short", "counts") if k in run}
    return {k: run[k] for k in keep} | extra


def mean_cold(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The cold figures of several cold runs (different hidden items and seeds) -> their means."""
    keys = ("cold_recall@10", "cold_ndcg@10", "warm_recall@10", "warm_ndcg@10", "recall@10", "ndcg@10")

    def mean(rows: Sequence[dict[str, Any]], k: str) -> float | None:
        vals = [r[k] for r in rows if r.get(k) is not None]
        return round(float(np.mean(vals)), 5) if vals else None

    out: dict[str, Any] = {k: mean(runs, k) for k in keys}
    zero = [r["zero_id_rows"] for r in runs if r.get("zero_id_rows")]
    if len(zero) == len(runs):
        out["zero_id_rows"] = {k: mean(zero, k) for k in keys}
    return out


def runs_to_extend(
    details_path: Path, key: str, mcfg: SeqRecConfig, with_mc: bool, seeds: Sequence[int], counts: str = "train"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The stored runs of ``key`` (and of its "+mc" row) that ``--extend`` keeps: only those of
    ``seeds``, and only when they were trained with the same config (else their mean would mix
    two setups). -> (runs, mc_runs)"""
    details = read_json(details_path, {})
    entry = details.get(key)
    if entry is None:
        return [], []
    # A knob added after the runs were stored counts as what those runs used: its value before it existed
    # (LEGACY_SEQREC) or else its default.
    stored = asdict(SeqRecConfig()) | LEGACY_SEQREC | entry.get("config", {})
    now = asdict(mcfg)
    diff = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
    if diff:
        raise ValueError(
            f"--extend: the stored runs of {key} used another config (differs in {', '.join(diff)}); "
            "run all seeds without --extend"
        )
    runs = [r for r in entry.get("runs", []) if int(r["seed"]) in seeds]
    mc_runs: list[dict[str, Any]] = []
    if with_mc:
        mc_runs = [r for r in details.get(key + MC_SUFFIX, {}).get("runs", []) if int(r["seed"]) in seeds]
        other = sorted({str(r.get("markov_counts", "train")) for r in mc_runs} - {counts})
        if other:
            raise ValueError(
                f"--extend: the stored {key}{MC_SUFFIX} runs counted the prior over {other[0]!r}, "
                f"not {counts!r} (prior_counts); run all seeds without --extend"
            )
        if {int(r["seed"]) for r in mc_runs} != {int(r["seed"]) for r in runs}:
            raise ValueError(f"--extend: {key} and {key}{MC_SUFFIX} hold runs of different seeds; rerun without it")
    return runs, mc_runs
