"""The benchmark run loop: every model of a :class:`BenchSeqRecConfig` over its seeds on one dataset,
the "+mc" rows, cold-item runs, and adding seeds to stored runs; results go to the JSON files only
(``training.reports.seqrec`` renders them)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

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
    shapes = _checked_shapes(cfg, cold_only)
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
    if mc_only:
        return _rescore_mc(ds, cfg, text_vectors, shapes)
    inputs = _Inputs(ds, text_vectors, profile_vectors, shapes, progress)
    new_rows: list[dict[str, Any]] = []
    for model in cfg.models:
        key = f"{ds.name}/{model}"
        if cold_only:
            entry: dict[str, Any] = read_json(runs_path(cfg.out), {}).get(key, {})
            row = _stored_row(cfg, ds.name, model)
        else:
            row, entry, mc_row = _main_runs(cfg, inputs, model, extend)
            if mc_row is not None:
                new_rows.append(mc_row)
        if cfg.cold_frac > 0 and specs[model].uses_text:
            entry["cold"] = _cold_runs(cfg, inputs, model)
            row["cold_recall@10"] = entry["cold"]["cold_recall@10"]
        new_rows.append(row)
        _write_rows(cfg, {key: entry}, [row])
    return new_rows


def _checked_shapes(cfg: BenchSeqRecConfig, cold_only: bool) -> list[PriorShape]:
    """Refuse an unrunnable config before any data is read. -> the prior shapes of the "+mc" rows"""
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
    return shapes


class _Inputs(NamedTuple):
    """What every run of one bench call shares."""

    ds: Dataset
    text_vectors: np.ndarray | None  # [N, T]
    profile_vectors: np.ndarray | None  # [U, P]
    shapes: list[PriorShape]
    progress: bool


def _stored_row(cfg: BenchSeqRecConfig, dataset: str, model: str) -> dict[str, Any]:
    """``--cold-only``: the stored row the cold figure is added to."""
    json_path = rows_path(cfg.out)
    rows = read_json(json_path, [])
    row = next((dict(r) for r in rows if (r["dataset"], r["model"]) == (dataset, model)), None)
    if row is None:
        raise ValueError(f"--cold-only: no row for {dataset}/{model} in {json_path}; run it without --cold-only first")
    return row


def _main_runs(
    cfg: BenchSeqRecConfig, inputs: _Inputs, model: str, extend: bool
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """Train ``model`` over the seeds (only the missing ones with ``extend``) and store its "+mc" row
    when it has one. -> (its row, its details entry, the "+mc" row or None)"""
    ds, details_path = inputs.ds, runs_path(cfg.out)
    mcfg = model_config(cfg.seqrec, model, cfg.model_overrides)
    key = f"{ds.name}/{model}"
    seeds = cfg.seeds[:1] if model in BASELINES else cfg.seeds  # baselines are deterministic
    with_mc = model in cfg.markov_models and model not in BASELINES
    old_runs: list[dict[str, Any]] = []
    old_mc_runs: list[dict[str, Any]] = []
    if extend and model not in BASELINES:
        old_runs, old_mc_runs = runs_to_extend(details_path, key, mcfg, with_mc, seeds, cfg.prior_counts)
        done = {int(r["seed"]) for r in old_runs}
        logger.info("%s: extending seeds %s with %s", key, sorted(done), [s for s in seeds if s not in done])
        seeds = [s for s in seeds if s not in done]
    runs: list[dict[str, Any]] = []
    for seed in seeds:
        logger.info("== %s: %s seed %d (budget %.1f min) ==", ds.name, model, seed, mcfg.max_minutes)
        runs.append(
            run_seqrec(
                ds.root,
                model,
                inputs.text_vectors,
                mcfg,
                seed,
                profile_vectors=inputs.profile_vectors,
                progress=inputs.progress,
                dataset=ds,
                markov_weights=cfg.markov_weights if with_mc else (),
                markov_beta=cfg.markov_beta,
                markov_shapes=inputs.shapes,
                save_to=_saved_model(cfg, ds.name, model, seed),
                short_history=cfg.short_history,
                prior_counts=cfg.prior_counts,
            )
        )
    all_runs = sorted(old_runs + [compact_run(r) for r in runs], key=lambda r: int(r["seed"]))
    row = aggregate(ds.name, model, all_runs)
    entry = {"runs": all_runs, "config": asdict(mcfg), "label": MODELS[model].label}
    # As merge_rows keeps a row's cold figure, keep the cold run's details that go with it.
    old_cold = read_json(details_path, {}).get(key, {}).get("cold")
    if old_cold is not None:
        entry["cold"] = old_cold
    mc_row = None
    if with_mc:
        mc_runs = old_mc_runs + [_mc_run(r) for r in runs]
        mc_runs.sort(key=lambda r: int(r["seed"]))
        mc_row = _write_mc_rows(cfg, ds.name, model, mcfg, inputs.shapes, mc_runs)
    return row, entry, mc_row


def _mc_run(run: dict[str, Any]) -> dict[str, Any]:
    """A main run as its "+mc" run: the prior-guided figures in place of the plain ones (the
    short-history figure is the plain model's: not carried into the "+mc" row)."""
    prior = run["markov"]
    mc = {k: v for k, v in run.items() if k != "test_short"} | {"val": prior["val"], "test": prior["test"]}
    return {
        **compact_run(mc),
        "markov_weight": prior["weight"],
        "markov_shape": prior["shape"],
        "markov_counts": prior["counts"],
    }


def _cold_runs(cfg: BenchSeqRecConfig, inputs: _Inputs, model: str) -> dict[str, Any]:
    """``cfg.cold_runs`` runs of ``model`` with ``cfg.cold_frac`` of the items hidden from training.
    -> the details entry's "cold" part (their mean and every run)"""
    ds = inputs.ds
    ccfg = copy.deepcopy(model_config(cfg.seqrec, model, cfg.model_overrides))
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
            inputs.text_vectors,
            ccfg,
            seed,
            profile_vectors=inputs.profile_vectors,
            cold_frac=cfg.cold_frac,
            cold_seed=cold_seed,
            progress=inputs.progress,
            dataset=ds,
        )
        cold_runs.append(
            {**crun["cold"], "model_seed": seed, "cold_seed": cold_seed, "train_seconds": crun["train_seconds"]}
        )
    return {
        **mean_cold(cold_runs),
        "frac": cfg.cold_frac,
        "seed": cfg.cold_seed,
        "n_cold_items": cold_runs[0]["n_cold_items"],
        "max_minutes": ccfg.max_minutes,
        "cold_id": asdict(cold_id_rule(ccfg)),
        "runs": cold_runs,
    }


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
                cold = _merged_cold(a.get("cold"), b.get("cold"), key)
                if cold is not None:
                    merged["cold"] = cold
            row = aggregate(dataset, key.split("/", 1)[1], merged["runs"])
            if merged.get("cold") is not None:
                row["cold_recall@10"] = merged["cold"]["cold_recall@10"]
            _write_rows(cfg, {key: merged}, [row])
            out.append(row)
    if not out:
        raise ValueError(f"--merge-runs: {other_details} holds none of {dataset}/{', '.join(cfg.models)}")
    return out


def _cold_seeds(cold: dict[str, Any]) -> list[int]:
    """The hidden-item seed of each cold run (run i of a process used its base seed + i)."""
    return [int(r.get("cold_seed", int(cold["seed"]) + i)) for i, r in enumerate(cold["runs"])]


def _merged_cold(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    """The cold runs of two processes as one entry (their mean over every run), as if one process had
    made them all; None when neither has cold runs."""
    if a is None or b is None:
        return a if b is None else b
    same = ("frac", "max_minutes", "cold_id", "n_cold_items")
    differ = [k for k in same if a.get(k) != b.get(k)]
    if differ:
        raise ValueError(f"--merge-runs: the cold runs of {key} differ in {', '.join(differ)}")
    seeds_a, seeds_b = _cold_seeds(a), _cold_seeds(b)
    if set(seeds_a) & set(seeds_b):
        raise ValueError(
            f"--merge-runs: both files hold cold runs of {key} with hidden-item seed(s) "
            f"{sorted(set(seeds_a) & set(seeds_b))}"
        )
    runs = [{**r, "cold_seed": s} for r, s in zip(a["runs"] + b["runs"], seeds_a + seeds_b, strict=True)]
    runs.sort(key=lambda r: int(r["cold_seed"]))
    return {**a, **mean_cold(runs), "seed": min(seeds_a + seeds_b), "runs": runs}


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
