"""The benchmark run loop: every model of a :class:`BenchSeqRecConfig` over its seeds on one dataset,
the "+mc" rows, cold-item runs, and adding seeds to stored runs; results go to the JSON files only
(``training.reports.seqrec`` renders them)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.core.transitions import PriorShape
from training.config import BenchSeqRecConfig, SeqRecConfig
from training.data.loader import Dataset, load_dataset
from training.data.split import leave_one_out, train_item_counts
from training.evaluation.prior import PRIOR_COUNTS, markov_eval
from training.seqrec.model import build_model, cold_id_rule, with_cold_ids
from training.seqrec.registry import BASELINES, MC_SUFFIX, MODELS, model_config, model_label
from training.seqrec.results import (
    aggregate,
    compact_run,
    mean_cold,
    merge_rows,
    read_json,
    rows_path,
    runs_path,
    runs_to_extend,
    write_json,
)
from training.seqrec.runs import dataset_inputs, run_seqrec

logger = logging.getLogger(__name__)


def bench(
    data_dir: Path | str,
    cfg: BenchSeqRecConfig,
    *,
    cold_only: bool = False,
    extend: bool = False,
    mc_only: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run every model of ``cfg.models`` over ``cfg.seeds`` on one dataset; update the JSON files in
    ``cfg.out`` after each model (an interrupted run keeps what finished). -> new rows

    ``extend``: keep the stored runs of a model whose seeds are in ``cfg.seeds`` (same config
    only) and train just the missing seeds, so seeds can be added later or by parallel jobs
    (one model per job).

    ``mc_only``: no training; the "+mc" rows of ``cfg.models`` are recomputed from the weights the
    main runs saved under ``cfg.models_dir`` (another prior shape or weight grid, say)."""
    unknown = [m for m in cfg.models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)} (known: {', '.join(MODELS)})")
    if not cfg.seeds:
        raise ValueError("no seeds given")
    if cold_only and cfg.cold_frac <= 0:
        raise ValueError("--cold-only needs cold_frac > 0")
    if cfg.cold_runs < 1:
        raise ValueError(f"cold_runs must be >= 1, got {cfg.cold_runs}")
    if cfg.prior_counts not in PRIOR_COUNTS:
        raise ValueError(f"prior_counts must be one of {PRIOR_COUNTS}, got {cfg.prior_counts!r}")
    shapes = [PriorShape.from_dict(d) for d in cfg.markov_shapes]
    if not shapes:
        raise ValueError("markov_shapes is empty: give at least one prior shape ({} = first-order)")
    if cfg.seqrec.threads > 0:
        torch.set_num_threads(cfg.seqrec.threads)
    ds = load_dataset(data_dir, allow_empty_titles=cfg.allow_empty_titles)
    specs = {m: MODELS[m] for m in cfg.models}
    if any(s.uses_profile for s in specs.values()) and ds.users is None:
        raise ValueError(f"dataset {ds.name!r} has no users.jsonl: drop the *_profile models")
    needs_text = any(
        s.uses_text or model_config(cfg.seqrec, m, cfg.model_overrides).item_encoder != "fused"
        for m, s in specs.items()
        if m not in BASELINES
    )
    with_profiles = any(s.uses_profile for s in specs.values())
    logger.info("bench-seqrec %s: models %s, seeds %s", ds.name, ", ".join(cfg.models), cfg.seeds)
    text_vectors, profile_vectors = dataset_inputs(ds, cfg, text=needs_text, profiles=with_profiles)
    json_path, details_path = rows_path(cfg.out), runs_path(cfg.out)
    if mc_only:
        return _rescore_mc(ds, cfg, text_vectors, shapes)
    new_rows: list[dict[str, Any]] = []
    for model in cfg.models:
        spec = specs[model]
        mcfg = model_config(cfg.seqrec, model, cfg.model_overrides)
        key = f"{ds.name}/{model}"
        entry: dict[str, Any] = read_json(details_path, {}).get(key, {}) if cold_only else {}
        row: dict[str, Any] | None = None
        if not cold_only:
            seeds = cfg.seeds[:1] if model in BASELINES else cfg.seeds  # baselines are deterministic
            with_mc = model in cfg.markov_models and model not in BASELINES
            runs: list[dict[str, Any]] = []
            old_runs: list[dict[str, Any]] = []
            old_mc_runs: list[dict[str, Any]] = []
            if extend and model not in BASELINES:
                old_runs, old_mc_runs = runs_to_extend(details_path, key, mcfg, with_mc, seeds, cfg.prior_counts)
                done = {int(r["seed"]) for r in old_runs}
                logger.info("%s: extending seeds %s with %s", key, sorted(done), [s for s in seeds if s not in done])
                seeds = [s for s in seeds if s not in done]
            for seed in seeds:
                logger.info("== %s: %s seed %d (budget %.1f min) ==", ds.name, model, seed, mcfg.max_minutes)
                runs.append(
                    run_seqrec(
                        ds.root,
                        model,
                        text_vectors,
                        mcfg,
                        seed,
                        profile_vectors=profile_vectors,
                        progress=progress,
                        dataset=ds,
                        markov_weights=cfg.markov_weights if with_mc else (),
                        markov_beta=cfg.markov_beta,
                        markov_shapes=shapes,
                        save_to=_saved_model(cfg, ds.name, model, seed),
                        short_history=cfg.short_history,
                        prior_counts=cfg.prior_counts,
                    )
                )
            all_runs = sorted(old_runs + [compact_run(r) for r in runs], key=lambda r: int(r["seed"]))
            row = aggregate(ds.name, model, all_runs)
            entry = {"runs": all_runs, "config": asdict(mcfg), "label": spec.label}
            # As merge_rows keeps a row's cold figure, keep the cold run's details that go with it.
            old_cold = read_json(details_path, {}).get(key, {}).get("cold")
            if old_cold is not None:
                entry["cold"] = old_cold
            if with_mc:
                # (the short-history figure is the plain model's: not carried into the "+mc" row)
                mc_runs = [
                    {k: v for k, v in r.items() if k != "test_short"}
                    | {"val": r["markov"]["val"], "test": r["markov"]["test"]}
                    for r in runs
                ]
                mc_all = old_mc_runs + [
                    {
                        **compact_run(r),
                        "markov_weight": r["markov"]["weight"],
                        "markov_shape": r["markov"]["shape"],
                        "markov_counts": r["markov"]["counts"],
                    }
                    for r in mc_runs
                ]
                mc_all.sort(key=lambda r: int(r["seed"]))
                new_rows.append(_write_mc_rows(cfg, ds.name, model, mcfg, shapes, mc_all))
        else:
            rows = read_json(json_path, [])
            row = next((dict(r) for r in rows if (r["dataset"], r["model"]) == (ds.name, model)), None)
            if row is None:
                raise ValueError(f"--cold-only: no row for {key} in {json_path}; run it without --cold-only first")
        if cfg.cold_frac > 0 and spec.uses_text:
            ccfg = copy.deepcopy(mcfg)
            if cfg.cold_minutes is not None:
                ccfg.max_minutes = cfg.cold_minutes
            cold_runs = []
            for i in range(cfg.cold_runs):
                seed, cold_seed = cfg.seeds[i % len(cfg.seeds)], cfg.cold_seed + i
                logger.info(
                    "== %s: %s cold run %d/%d (%.0f%% items hidden, seed %d) ==",
                    ds.name,
                    model,
                    i + 1,
                    cfg.cold_runs,
                    100 * cfg.cold_frac,
                    seed,
                )
                crun = run_seqrec(
                    ds.root,
                    model,
                    text_vectors,
                    ccfg,
                    seed,
                    profile_vectors=profile_vectors,
                    cold_frac=cfg.cold_frac,
                    cold_seed=cold_seed,
                    progress=progress,
                    dataset=ds,
                )
                cold_runs.append({**crun["cold"], "model_seed": seed, "train_seconds": crun["train_seconds"]})
            entry["cold"] = {
                **mean_cold(cold_runs),
                "frac": cfg.cold_frac,
                "seed": cfg.cold_seed,
                "n_cold_items": cold_runs[0]["n_cold_items"],
                "max_minutes": ccfg.max_minutes,
                "cold_id": asdict(cold_id_rule(ccfg)),
                "runs": cold_runs,
            }
            row["cold_recall@10"] = entry["cold"]["cold_recall@10"]
        new_rows.append(row)
        _write_rows(cfg, {key: entry}, [row])
    return new_rows


def merge_runs(cfg: BenchSeqRecConfig, dataset: str, other_details: Path) -> list[dict[str, Any]]:
    """Add the runs another bench process stored in ``other_details`` (same config, other seeds; seeds
    of one model split over processes or machines) to the entries of ``cfg.models`` and their
    "+mc" rows, and recompute those rows. -> the new rows"""
    mine, theirs = read_json(runs_path(cfg.out), {}), read_json(other_details, {})
    out: list[dict[str, Any]] = []
    for model in cfg.models:
        for key in (f"{dataset}/{model}", f"{dataset}/{model}{MC_SUFFIX}"):
            if key not in theirs:
                continue
            a, b = mine.get(key), theirs[key]
            if a is None:
                merged = dict(b)
            else:
                if a.get("config") != b.get("config"):
                    raise ValueError(f"--merge-runs: {key} was trained with another config in {other_details}")
                overlap = {int(r["seed"]) for r in a["runs"]} & {int(r["seed"]) for r in b["runs"]}
                if overlap:
                    raise ValueError(f"--merge-runs: both files hold {key} seed(s) {sorted(overlap)}")
                merged = {**a, "runs": sorted(a["runs"] + b["runs"], key=lambda r: int(r["seed"]))}
            row = aggregate(dataset, key.split("/", 1)[1], merged["runs"])
            _write_rows(cfg, {key: merged}, [row])
            out.append(row)
    if not out:
        raise ValueError(f"--merge-runs: {other_details} holds none of {dataset}/{', '.join(cfg.models)}")
    return out


def _saved_model(cfg: BenchSeqRecConfig, dataset: str, model: str, seed: int) -> Path | None:
    """Where a main run's trained weights go (None: not kept)."""
    if cfg.models_dir is None or model in BASELINES:
        return None
    return Path(cfg.models_dir) / dataset / model / f"seed{seed}.pt"


def _rescore_mc(
    ds: Dataset, cfg: BenchSeqRecConfig, text_vectors: np.ndarray | None, shapes: Sequence[PriorShape]
) -> list[dict[str, Any]]:
    """``--mc-only``: the "+mc" rows of ``cfg.models`` from their saved main-run weights."""
    split = leave_one_out(ds)
    known = (train_item_counts(split) > 0).astype(np.float32)  # [N], as fit_seqrec marks trained rows
    details_path = runs_path(cfg.out)
    new_rows: list[dict[str, Any]] = []
    for model in cfg.models:
        spec = MODELS[model]
        mcfg = model_config(cfg.seqrec, model, cfg.model_overrides)
        key = f"{ds.name}/{model}"
        if model in BASELINES or spec.uses_profile or mcfg.item_encoder != "fused":
            raise ValueError(f"--mc-only re-scores fused models without profiles (sasrec, fusion); not {model}")
        runs, _ = runs_to_extend(details_path, key, mcfg, False, cfg.seeds)
        missing = sorted(set(cfg.seeds) - {int(r["seed"]) for r in runs})
        if missing:
            raise ValueError(f"--mc-only: {key} has no stored run for seed(s) {missing}; train them first")
        mc_runs = []
        for run in sorted(runs, key=lambda r: int(r["seed"])):
            path = _saved_model(cfg, ds.name, model, int(run["seed"]))
            if path is None or not path.is_file():
                raise ValueError(f"--mc-only: no saved weights for {key} seed {run['seed']} ({path}); retrain it")
            net = build_model(mcfg, split.n_items, text_vectors if mcfg.use_text else None, known)
            net.load_state_dict(torch.load(path, map_location="cpu"))
            served = with_cold_ids(net, cold_id_rule(mcfg))
            logger.info("== %s: %s seed %s, +mc from %s ==", ds.name, model, run["seed"], path)
            mc = markov_eval(served, split, cfg.markov_weights, cfg.markov_beta, shapes=shapes, counts=cfg.prior_counts)
            mc_runs.append(
                {
                    **run,
                    "val": mc["val"],
                    "test": mc["test"],
                    "markov_weight": mc["weight"],
                    "markov_shape": mc["shape"],
                    "markov_counts": mc["counts"],
                }
            )
        new_rows.append(_write_mc_rows(cfg, ds.name, model, mcfg, shapes, mc_runs))
    return new_rows


def _write_mc_rows(
    cfg: BenchSeqRecConfig,
    dataset: str,
    model: str,
    mcfg: SeqRecConfig,
    shapes: Sequence[PriorShape],
    runs: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """Store the "+mc" runs of ``model`` (details entry and table row). -> the row"""
    entry = {
        "runs": list(runs),
        "config": asdict(mcfg),
        "label": model_label(model + MC_SUFFIX),
        "markov": {
            "weights": list(cfg.markov_weights),
            "beta": cfg.markov_beta,
            "shapes": [sh.to_dict() for sh in shapes],
            "counts": cfg.prior_counts,
        },
    }
    row = aggregate(dataset, model + MC_SUFFIX, runs)
    _write_rows(cfg, {f"{dataset}/{model}{MC_SUFFIX}": entry}, [row])
    return row


def _write_rows(cfg: BenchSeqRecConfig, entries: dict[str, dict[str, Any]], rows: Sequence[dict[str, Any]]) -> None:
    """Merge run details and table rows into the JSON files of ``cfg.out``."""
    json_path, details_path = rows_path(cfg.out), runs_path(cfg.out)
    # Re-read right before writing: another bench (other dataset) may have written since this model began.
    details = read_json(details_path, {})
    details.update(entries)
    write_json(details_path, dict(sorted(details.items())))
    write_json(json_path, merge_rows(read_json(json_path, []), rows))
