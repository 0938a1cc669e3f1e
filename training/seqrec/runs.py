"""One benchmark run: train (or count) one model of the registry on one dataset with one seed and
evaluate it (validation, test, cold items, short histories, the "+mc" prior)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from service.core.items import item_text
from service.core.transitions import PriorShape
from training.checkpoint import cpu_state_dict
from training.config import BenchSeqRecConfig, SeqRecConfig
from training.data.loader import Dataset, load_dataset
from training.data.profiles import profile_sentences
from training.data.split import EvalCase, Split, item_counts, leave_one_out
from training.data.stats import TransitionModel
from training.encoder.cache import cached_text_vectors
from training.evaluation.prior import counted_sequences, markov_eval, model_ranks
from training.evaluation.protocols import hide_items, metrics_by_cold, shorten
from training.loop import seed_everything
from training.metrics import PopularityModel, evaluate, metrics_from_ranks, target_ranks
from training.seqrec.fit import evaluate_model, fit_seqrec
from training.seqrec.model import cold_id_rule, with_cold_ids
from training.seqrec.registry import BASELINES, model_config

logger = logging.getLogger(__name__)


def run_seqrec(
    dataset_dir: Path | str,
    model_name: str,
    text_vectors: np.ndarray | None,
    cfg: SeqRecConfig,
    seed: int,
    *,
    profile_vectors: np.ndarray | None = None,
    cold_frac: float = 0.0,
    cold_seed: int = 0,
    progress: bool = True,
    dataset: Dataset | None = None,
    markov_weights: Sequence[float] = (),
    markov_beta: float = 1.0,
    markov_shapes: Sequence[PriorShape] = (PriorShape(),),
    save_to: Path | None = None,
    short_history: Sequence[int] = (),
    prior_counts: str = "train",
) -> dict[str, Any]:
    """Train ``model_name`` (a key of :data:`MODELS`) on a dataset folder and evaluate it.

    ``cfg`` is the base config (the model's preset is applied on top; pass
    ``model_config(...)``-style fields in it to tune), ``seed`` replaces ``cfg.seed``.
    ``text_vectors`` [N, T] in ``items.jsonl`` order (e.g. base vs fine-tuned encoder);
    ``profile_vectors`` [U, P] in ``sequences.jsonl`` order for the ``*_profile`` models.
    With ``cold_frac > 0`` that share of items is hidden from training (:func:`hide_items`).

    Returns ``{"model", "seed", "val", "test", "train_seconds", "epochs", "best_epoch",
    "stop_reason", "seconds_per_epoch", "cold"}``; ``val``/``test`` hold recall@5/10 and ndcg@5/10,
    ``cold`` is None or ``{"frac", "n_cold_items", "n_cold_cases", "cold_recall@10",
    "warm_recall@10", "cold_ndcg@10"}``.

    With ``short_history`` ``out["test_short"]`` is ``{str(K): test metrics}`` of the same model with each
    test history cut to its last K items (:func:`shorten`).

    With ``markov_weights`` (neural models only) ``out["markov"]`` is ``{"weight", "beta", "val",
    "test"}``: the same trained model ranked by log-softmax + weight x the first-order transition
    log-prior of ``split.train`` (:class:`TransitionPrior`), the weight picked on validation NDCG@10.
    """
    ds = dataset if dataset is not None else load_dataset(dataset_dir, allow_empty_titles=True)
    split = leave_one_out(ds)
    cold: npt.NDArray[np.bool_] | None = None
    if cold_frac > 0:
        split, cold = hide_items(split, cold_frac, cold_seed)
    mcfg = model_config(cfg, model_name)
    mcfg.seed = seed
    t0 = time.perf_counter()
    out: dict[str, Any] = {"model": model_name, "seed": seed}
    zero_ranks: npt.NDArray[np.int64] | None = None  # cold runs: ranks with untrained ID rows left at zero
    if model_name in BASELINES:
        seed_everything(seed)
        baseline = _baseline(model_name, split, counted_sequences(split, split.val, prior_counts))
        out["train_seconds"] = round(time.perf_counter() - t0, 2)  # counting is its training
        tester = baseline
        if prior_counts != "train":  # the test cases' counts also hold each user's validation item
            tester = _baseline(model_name, split, counted_sequences(split, split.test, prior_counts))
        out |= {"val": evaluate(baseline, split.val), "test": evaluate(tester, split.test), "counts": prior_counts}
        out |= {"epochs": 0, "best_epoch": 0, "stop_reason": "none", "seconds_per_epoch": 0.0}
        test_ranks = _ranks(tester, split.test)
        if short_history:
            out["test_short"] = {str(k): evaluate(tester, shorten(split.test, k)) for k in short_history}
    else:
        fitted = fit_seqrec(split, text_vectors, mcfg, None, profiles=profile_vectors, exclude=cold, progress=progress)
        prof = profile_vectors if mcfg.use_profile else None
        if save_to is not None:  # the restored best weights, for later re-scoring (--mc-only)
            save_to.parent.mkdir(parents=True, exist_ok=True)
            torch.save(cpu_state_dict(fitted.model), save_to)
        best_val = fitted.best_val()
        out["val"] = dict(best_val) if best_val is not None else evaluate_model(fitted.model, split.val, profiles=prof)
        # Scored as served: items without a trained ID row borrow one by text (cold_id_* of the config).
        served = with_cold_ids(fitted.model, cold_id_rule(mcfg))
        test_ranks = model_ranks(served, split.test, profiles=prof)
        if cold is not None and served is not fitted.model:  # the same model with zero rows, for comparison
            zero_ranks = model_ranks(fitted.model, split.test, profiles=prof)
        out["test"] = metrics_from_ranks(test_ranks)
        if short_history:
            out["test_short"] = {
                str(k): metrics_from_ranks(model_ranks(served, shorten(split.test, k), profiles=prof))
                for k in short_history
            }
        if markov_weights:
            out["markov"] = markov_eval(
                served, split, markov_weights, markov_beta, profiles=prof, shapes=markov_shapes, counts=prior_counts
            )
        out |= {
            "train_seconds": round(fitted.fit.train_seconds, 1),
            "epochs": fitted.fit.epochs,
            "best_epoch": fitted.fit.best_epoch,
            "stop_reason": fitted.fit.stop_reason,
            "seconds_per_epoch": round(fitted.seconds_per_epoch, 1),
        }
    out["cold"] = None
    if cold is not None:
        is_cold = np.array([bool(cold[c.target]) for c in split.test])  # [n_test]
        out["cold"] = {
            "frac": cold_frac,
            "seed": cold_seed,
            "n_cold_items": int(cold.sum()),
            "n_cold_cases": int(is_cold.sum()),
            **metrics_by_cold(test_ranks, is_cold),
        }
        if zero_ranks is not None:
            out["cold"]["zero_id_rows"] = metrics_by_cold(zero_ranks, is_cold)
    logger.info(
        "%s seed %d: test R@10 %.4f N@10 %.4f (val N@10 %.4f)%s",
        model_name,
        seed,
        out["test"]["recall@10"],
        out["test"]["ndcg@10"],
        out["val"]["ndcg@10"],
        "" if out["cold"] is None else f", cold R@10 {out['cold']['cold_recall@10']}",
    )
    return out


def _baseline(
    model_name: str, split: Split, sequences: Sequence[Sequence[int]] | None = None
) -> Callable[[Sequence[EvalCase]], npt.NDArray[np.float64]]:
    """Popularity, or first-order item -> next item counts with popularity breaking ties, counted over
    ``sequences`` (default ``split.train``)."""
    seqs = split.train if sequences is None else sequences
    pop = PopularityModel(item_counts(seqs, split.n_items))
    if model_name == "popularity":
        return pop
    if model_name == "transitions":
        return TransitionModel(seqs, split.n_items, pop)
    raise ValueError(f"unknown baseline {model_name!r}; baselines: {sorted(BASELINES)}")


def _ranks(
    model: Callable[[Sequence[EvalCase]], npt.NDArray[np.float64]], cases: Sequence[EvalCase]
) -> npt.NDArray[np.int64]:
    targets = np.array([c.target for c in cases], dtype=np.int64)
    return target_ranks(model(cases), targets)


def dataset_inputs(
    ds: Dataset, cfg: BenchSeqRecConfig, *, text: bool, profiles: bool
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(item text vectors [N, T] | None, profile vectors [U, P] | None), from the on-disk cache."""
    cache = Path(cfg.cache_dir) / ds.name
    model_dir = Path(cfg.encoder_dir) if cfg.encoder_dir else None
    text_vectors = None
    if text:
        text_vectors = cached_text_vectors([item_text(it) for it in ds.items], cache, cfg.embed, model_dir)
    profile_vectors = None
    if profiles:
        profile_vectors = cached_text_vectors(profile_sentences(ds), cache, cfg.embed, model_dir)
    return text_vectors, profile_vectors
