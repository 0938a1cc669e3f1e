"""Hybrid mode evaluated as served (``recsvc-train bench-genrec --hybrid``).

Next to the generative model that bench-genrec trains, the job fits the sequential model the
build serves for dense mode (``BuildConfig.seqrec``: ID + W·text fusion, items at one norm, the
served cold-ID rule) on the same leave-one-out split, and scores on the same cases:

- dense: that model alone (full ranking) and with the item -> next item prior (``markov_eval``: the
  served dense ranking ``u . v + w log p(j | last)``, w picked on validation NDCG@10);
- hybrid: per case the pool the service builds (dense top ``max(k, HYBRID_DENSE_POOL)`` by dot product,
  the beam's top ``max(k, beam)`` items decoded as generative mode decodes them (prior-guided with the
  genrec's picked weight when it has one), the context's successors under the prior) merged by
  :func:`service.recommender.hybrid.merge_and_rescore` itself, the function ``Recommender._hybrid`` calls.
  Its knobs (:class:`HybridWeights`: prior weight, beam-bonus weight) are picked on the validation cases
  (NDCG@10 over a grid), then scored once on test. The target's rank is its position in the merged
  top-10 (not returned = miss), as for generative rows.

History items are not excluded (the published protocol; ``exclude_history: false`` in a request). The
prior counts what ``GenRecConfig.prior_counts`` names (``train``: comparable with published rows).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from service.core.transitions import TransitionPrior
from service.recommender.hybrid import HYBRID_DENSE_POOL, HybridWeights, merge_and_rescore
from service.semantic_ids.prefix_index import PrefixIndex
from training.config import BuildConfig, GenRecConfig, SeqRecConfig
from training.data.split import EvalCase, Split
from training.metrics import metrics_from_ranks
from training.models.seqrec import SeqRec
from training.seqrec.fit import FittedSeqRec, fit_seqrec
from training.seqrec.model import cold_id_rule, served_top, with_cold_ids

logger = logging.getLogger(__name__)

DENSE_CKPT_DIR = "seqrec-checkpoints"
# The merge's knobs tried on validation (every pair).
PRIOR_GRID = (0.0, 0.25, 0.5, 1.0, 2.0)
GENERATIVE_GRID = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def dense_config(max_minutes: float, seed: int = 0, patience: int = 4) -> SeqRecConfig:
    """The sequential model the build serves for dense mode (``BuildConfig.seqrec``: ID + W·text fusion,
    items at one norm, the served cold-ID rule), with this budget."""
    return dataclasses.replace(BuildConfig().seqrec, max_minutes=max_minutes, epochs=200, patience=patience, seed=seed)


def train_dense(split: Split, text_vectors: np.ndarray, cfg: SeqRecConfig, work_dir: Path) -> FittedSeqRec:
    """Fit (or resume from ``work_dir``/seqrec-checkpoints) the served dense model on ``split``."""
    return fit_seqrec(split, text_vectors, cfg, work_dir / DENSE_CKPT_DIR, progress=False)


@dataclasses.dataclass
class DenseSide:
    """What the served dense mode computes for a list of cases."""

    users: F32  # [C, D] user vectors (the exported tower: last state over the history's item vectors)
    table: F32  # [N, D] item vectors (the snapshot's seqrec vectors)
    top: I64  # [C, P] rows of the top P by dot product (the ANN search, exact here)


def dense_side(model: SeqRec, cases: Sequence[EvalCase], pool: int, batch_size: int = 256) -> DenseSide:
    """User vectors through the exported graph (:class:`LastStateTower`) and the dense top ``pool``."""
    with torch.no_grad():
        table = model.all_item_reps()  # [N, D]
    users = np.empty((len(cases), table.shape[1]), dtype=np.float32)
    top = np.empty((len(cases), min(pool, table.shape[0])), dtype=np.int64)
    for idx, u, _, rows in served_top(model, table, [c.history for c in cases], pool, batch_size):
        users[idx] = u.numpy()
        top[idx] = rows.numpy()
    return DenseSide(users, table.numpy().astype(np.float32), top)


@dataclasses.dataclass
class GenerativeSide:
    rows: I64  # [C, W] the beam's items (-1 = none)
    scores: F32  # [C, W] their beam scores


def generative_side(
    model: Any,
    encoder_table: np.ndarray,
    index: PrefixIndex,
    cases: Sequence[EvalCase],
    cfg: GenRecConfig,
    k: int,
    prior: TransitionPrior | None,
    prior_weight: float,
) -> GenerativeSide:
    """The beam the service's hybrid mode decodes: top ``max(k, beam)`` with scores."""
    from training.genrec.decode import decode_scored

    model.eval()
    width = max(k, cfg.beam)
    rows, scores = [], []
    for s in range(0, len(cases), cfg.eval_batch_size):
        batch = cases[s : s + cfg.eval_batch_size]
        r, sc = decode_scored(
            model,
            encoder_table,
            index,
            [c.history for c in batch],
            cfg,
            width,
            prior,
            prior_weight,
        )
        rows.append(r)
        scores.append(sc)
    return GenerativeSide(np.concatenate(rows), np.concatenate(scores).astype(np.float32))


def hybrid_ranks(
    cases: Sequence[EvalCase],
    dense: DenseSide,
    gen: GenerativeSide,
    prior: TransitionPrior | None,
    grid: Sequence[HybridWeights],
    k: int = 10,
    batch_size: int = 512,
) -> I64:
    """Each case's target rank in the merged top-``k`` (miss = ``k``) for each weight pair. -> [G, C]

    The pool and the score are the service's: ``merge_and_rescore`` over the dense top, the beam's items
    and (for a prior weight > 0) the context's successors, with log p(j | context) of the pool rows."""
    ranks = np.full((len(grid), len(cases)), k, dtype=np.int64)
    for s in range(0, len(cases), batch_size):
        batch = cases[s : s + batch_size]
        lp = prior.history_log_prob([c.history for c in batch]) if prior is not None else None  # [B, N]
        for b, case in enumerate(batch):
            i = s + b
            succ = prior.successors_of(prior.context(case.history)) if prior is not None else np.zeros(0, np.int64)
            row_lp = None if lp is None else lp[b]
            for g, w in enumerate(grid):
                use_prior = row_lp is not None and w.prior > 0
                scored = merge_and_rescore(
                    dense.top[i].tolist(),
                    gen.rows[i].tolist(),
                    dense.table,
                    dense.users[i],
                    k,
                    generative_scores=gen.scores[i].tolist(),
                    extra_rows=succ.tolist() if use_prior else (),
                    log_prior=(lambda rows, r=row_lp: r[rows]) if use_prior else None,  # type: ignore[misc]
                    weights=w,
                )
                top = [row for row, _ in scored]
                if case.target in top:
                    ranks[g, i] = top.index(case.target)
    return ranks


def weight_grid(prior: bool) -> list[HybridWeights]:
    return [HybridWeights(p, gw) for p in (PRIOR_GRID if prior else (0.0,)) for gw in GENERATIVE_GRID]


def evaluate_hybrid(
    fitted: FittedSeqRec,
    dense_cfg: SeqRecConfig,
    split: Split,
    val: Sequence[EvalCase],
    test: Sequence[EvalCase],
    genrec: Any,
    encoder_table: np.ndarray,
    index: PrefixIndex,
    cfg: GenRecConfig,
    val_prior: TransitionPrior | None,
    test_prior: TransitionPrior | None,
    genrec_prior_weight: float,
    k: int = 10,
) -> dict[str, Any]:
    """Dense (alone / + prior) and hybrid on ``val`` and ``test``; the hybrid weights picked on ``val``.

    -> {"dense": {"val", "test"}, "dense_prior": markov_eval's dict (or None), "hybrid": {"weights",
    "val", "test", "val_ndcg@10" (every pair), "genrec_prior_weight", "dense_pool", "beam"}, "seconds"}"""
    from training.evaluation.prior import markov_eval, model_ranks

    t0 = time.perf_counter()
    served = with_cold_ids(fitted.model, cold_id_rule(dense_cfg))
    out: dict[str, Any] = {
        "dense": {
            "val": metrics_from_ranks(model_ranks(served, val)),
            "test": metrics_from_ranks(model_ranks(served, test)),
            "best_epoch": fitted.fit.best_epoch,
            "epochs": fitted.fit.epochs,
            "stop_reason": fitted.fit.stop_reason,
            "train_seconds": round(fitted.fit.train_seconds, 1),
        },
        "dense_prior": None,
    }
    if val_prior is not None and test_prior is not None:
        # The served dense ranking with the prior counted as the hybrid's (cases restricted to val/test).
        sub = dataclasses.replace(split, val=list(val), test=list(test))
        counts = "train" if val_prior is test_prior else "histories"
        out["dense_prior"] = markov_eval(served, sub, [0.1, 0.25, 0.5, 1.0, 2.0], val_prior.beta, counts=counts)
    sides = {}
    for name, cases, prior in (("val", val, val_prior), ("test", test, test_prior)):
        d = dense_side(served, cases, max(k, HYBRID_DENSE_POOL))
        g = generative_side(genrec, encoder_table, index, cases, cfg, k, prior, genrec_prior_weight)
        sides[name] = (cases, d, g, prior)
        logger.info("hybrid: %s candidates for %d cases (%.0fs so far)", name, len(cases), time.perf_counter() - t0)
    grid = weight_grid(val_prior is not None)
    cases, d, g, prior = sides["val"]
    val_ranks = hybrid_ranks(cases, d, g, prior, grid, k)  # [G, C]
    val_metrics = [metrics_from_ranks(r) for r in val_ranks]
    ndcg = [m["ndcg@10"] for m in val_metrics]
    best = int(np.argmax(ndcg))  # first max wins ties: the smaller weights
    chosen = grid[best]
    cases, d, g, prior = sides["test"]
    test_metrics = metrics_from_ranks(hybrid_ranks(cases, d, g, prior, [chosen], k)[0])
    plain = grid.index(HybridWeights(0.0, 0.0))
    test_plain = metrics_from_ranks(hybrid_ranks(cases, d, g, prior, [grid[plain]], k)[0])
    logger.info(
        "hybrid: weights %s picked on validation (N@10 %.4f) -> test R@10 %.4f N@10 %.4f",
        chosen.label(),
        ndcg[best],
        test_metrics["recall@10"],
        test_metrics["ndcg@10"],
    )
    out["hybrid"] = {
        "weights": dataclasses.asdict(chosen),
        "val": val_metrics[best],
        "test": test_metrics,
        "val_ndcg@10": {w.label(): round(v, 4) for w, v in zip(grid, ndcg, strict=True)},
        "unweighted": {"val": val_metrics[plain], "test": test_plain},
        "genrec_prior_weight": genrec_prior_weight,
        "dense_pool": max(k, HYBRID_DENSE_POOL),
        "beam": max(k, cfg.beam),
    }
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


# ------------------------------------------------------------------ bench-genrec --hybrid

HYBRID_JSON = Path("docs/results/hybrid.json")


@dataclasses.dataclass(frozen=True)
class HybridOptions:
    """``bench-genrec --hybrid``: the dense model's budget, the validation cases the merge is tuned on."""

    out: Path = HYBRID_JSON
    dense_minutes: float = 15.0
    val_users: int = 5000  # 0 = every validation case
    seed: int = 0
    command: str = ""


def _rounded(m: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in m.items()}


def run_hybrid(
    opts: HybridOptions,
    dataset: str,
    split: Split,
    text_vectors: np.ndarray,
    table: Any,
    cfg: GenRecConfig,
    res: Any,
    genrec_rows: Sequence[dict[str, Any]],
    work_dir: Path,
) -> dict[str, Any]:
    """Fit the served dense model (resumable under ``work_dir``) and evaluate dense, generative and hybrid
    on the genrec run's test cases and a seeded sample of validation cases. -> the ``hybrid.json`` entry."""
    from service.semantic_ids.decoder import with_item_ids
    from training.evaluation.prior import counted_sequences
    from training.loop import resolve_device

    if res.model is None or res.test_cases is None:
        raise ValueError("the genrec result holds no model / test cases")
    dense_cfg = dense_config(opts.dense_minutes, seed=opts.seed)
    fitted = train_dense(split, text_vectors, dense_cfg, work_dir)
    val = list(split.val)
    if opts.val_users and len(val) > opts.val_users:
        rng = np.random.default_rng(opts.seed)
        val = [val[i] for i in sorted(rng.choice(len(val), opts.val_users, replace=False))]
    test = list(res.test_cases)
    counts = cfg.prior_counts
    val_prior = TransitionPrior.from_sequences(counted_sequences(split, val, counts), split.n_items, cfg.prior_beta)
    test_prior = val_prior
    if counts != "train":
        test_prior = TransitionPrior.from_sequences(
            counted_sequences(split, test, counts), split.n_items, cfg.prior_beta
        )
    item_tokens = table.tokens()  # [N, depth]
    encoder_table = with_item_ids(item_tokens, np.arange(len(table))) if cfg.item_id_input else item_tokens
    index = PrefixIndex(table.sids, table.layout, resolve_device(cfg.device))
    prior_section = res.metrics.get("prior")
    genrec_prior_weight = float(prior_section["weight"]) if prior_section else 0.0
    out = evaluate_hybrid(
        fitted,
        dense_cfg,
        split,
        val,
        test,
        res.model,
        encoder_table,
        index,
        cfg,
        val_prior,
        test_prior,
        genrec_prior_weight,
    )
    dense_prior = out["dense_prior"]
    generative = {"model": genrec_rows[0]["model"], "test": {k: genrec_rows[0][k] for k in _METRICS}}
    generative_prior = None
    if len(genrec_rows) > 1:
        generative_prior = {"model": genrec_rows[1]["model"], "test": {k: genrec_rows[1][k] for k in _METRICS}}
    hyb = out["hybrid"]
    return {
        "dataset": dataset,
        "command": opts.command,
        "protocol": "leave-one-out, full catalog, history not excluded; hybrid and generative: rank in the top-10",
        "prior_counts": counts,
        "val_cases": len(val),
        "test_cases": len(test),
        "seed": opts.seed,
        "dense_model": "served seqrec (ID + W·text fusion, items at one norm 4, served cold-ID rule)",
        "dense": {
            "val": _rounded(out["dense"]["val"]),
            "test": _rounded(out["dense"]["test"]),
            "best_epoch": out["dense"]["best_epoch"],
            "epochs": out["dense"]["epochs"],
            "stop_reason": out["dense"]["stop_reason"],
            "train_seconds": out["dense"]["train_seconds"],
            "budget_minutes": opts.dense_minutes,
        },
        "dense_prior": None
        if dense_prior is None
        else {
            "weight": dense_prior["weight"],
            "val": _rounded(dense_prior["val"]),
            "test": _rounded(dense_prior["test"]),
            "val_ndcg@10": {k: round(v, 4) for k, v in dense_prior["val_by_weight"].items()},
        },
        "generative": generative,
        "generative_prior": generative_prior,
        "hybrid": {
            **{k: hyb[k] for k in ("weights", "val_ndcg@10", "genrec_prior_weight", "dense_pool", "beam")},
            "val": _rounded(hyb["val"]),
            "test": _rounded(hyb["test"]),
            "unweighted": {"val": _rounded(hyb["unweighted"]["val"]), "test": _rounded(hyb["unweighted"]["test"])},
        },
        "eval_seconds": out["seconds"],
    }


_METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")


def write_hybrid_entry(path: Path, entry: dict[str, Any]) -> None:
    """Replace the dataset's entry in ``path`` (a JSON list), keeping the others."""
    import json

    rows = json.loads(path.read_text()) if path.is_file() else []
    rows = [r for r in rows if r["dataset"] != entry["dataset"]] + [entry]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2) + "\n")
