"""Train the generative recommender (TIGER-style T5 over semantic-ID tokens).

Training examples: every position of every leave-one-out training sequence
(history = the items before it, last ``max_items``; target = the item), teacher
forcing on the target's sid tokens. Validation and test rank the target by its
position in the top-10 list that the served constrained beam search returns
(``service.semantic_ids``: the decoder the service runs, so the metrics are those of
what is served); a target not in the list is a miss. Recall/NDCG come from the shared
``training.metrics.metrics_from_ranks``.

Writes ``<out_dir>`` = ``<artifact root>/genrec``: the model via ``save_pretrained``
(config.json + model.safetensors). Serving loads it with torch + transformers (see
``service/semantic_ids/decoder.py`` for why not ONNX) and never imports ``training/``.
Training imports ``service.semantic_ids`` (pure torch, no web dependencies) so that
evaluation uses the served beam search itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from tqdm import tqdm

from service.core.sid import SidTable
from service.core.transitions import TransitionPrior
from service.semantic_ids.beam import beam_search
from service.semantic_ids.decoder import (
    GENREC_DIR,
    history_tokens,
    model_history_tokens,
    step_for,
    with_item_ids,
)
from service.semantic_ids.prefix_index import PrefixIndex
from training.config import ITEM_ID_INITS, LR_SCHEDULES, GenRecConfig
from training.data.split import EvalCase, Split
from training.evaluation.hybrid import HYBRID_JSON, HybridOptions, render_hybrid, run_hybrid, write_hybrid_entry
from training.loop import FitResult, LoopConfig, device_name, fit, resolve_device
from training.metrics import metrics_from_ranks, target_ranks
from training.models.genrec import GenRecBatch, build_genrec, genrec_loss

logger = logging.getLogger(__name__)


@dataclass
class GenRecResult:
    section: dict[str, Any]  # the manifest's extra["genrec"]
    metrics: dict[str, Any]
    train_seconds: float
    fit: FitResult
    model: Any = None  # the trained model (best validated weights), in eval mode
    test_cases: list[EvalCase] | None = None  # the cases ``metrics["test"]`` scored


def lr_at(step: int, cfg: GenRecConfig, total_steps: int = 0) -> float:
    """Learning rate of 0-based ``step`` under ``cfg.lr_schedule``; ``total_steps``: the run's
    intended length (``cfg.epochs`` x batches per epoch), which the cosine schedule decays over."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {cfg.lr_schedule!r}")
    n = step + 1
    warm = max(cfg.warmup_steps, 1)
    if n < warm:
        return cfg.lr * n / warm
    if cfg.lr_schedule == "inverse_sqrt":
        return cfg.lr * math.sqrt(warm / n)
    if total_steps < 1:
        raise ValueError("the cosine lr schedule needs the run's total steps (epochs x batches per epoch)")
    progress = min(max((n - warm) / max(total_steps - warm, 1), 0.0), 1.0)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def item_id_init_rows(vectors: np.ndarray, dim: int, std: float) -> np.ndarray:
    """Starting ID vectors [N, dim] from item vectors [N, F] (``GenRecConfig.item_id_init: vectors``):
    the centred vectors projected on their top ``dim`` principal components (fewer when F < dim, the
    rest zero), the whole matrix scaled to standard deviation ``std`` (that of a random start), so the
    ID vectors' geometry is that of the vectors: neighbours start as neighbours."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"item vectors must be a non-empty [N, F] array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("item vectors hold NaN or inf")
    x = x - x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)  # rows: principal directions, largest first
    k = min(dim, vt.shape[0])
    out = np.zeros((len(x), dim))
    out[:, :k] = x @ vt[:k].T
    spread = float(out.std())
    if spread > 0:
        out *= std / spread
    return out.astype(np.float32)


def training_examples(
    train: Sequence[Sequence[int]], max_items: int
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """(history, target, sequence) for every position >= 1 of every training sequence;
    ``sequence`` is the example's row in ``train`` (its user)."""
    hist: list[np.ndarray] = []
    targets: list[int] = []
    seqs: list[int] = []
    for u, s in enumerate(train):
        arr = np.asarray(s, dtype=np.int64)
        for i in range(1, len(arr)):
            hist.append(arr[max(0, i - max_items) : i])
            targets.append(int(arr[i]))
            seqs.append(u)
    if not hist:
        raise ValueError("no training sequence has 2 or more items")
    return hist, np.asarray(targets, dtype=np.int64), np.asarray(seqs, dtype=np.int64)


LENGTH_BUCKET = 32  # batches per length-sorted window (GenRecBatches.epoch)


class Guided(TypedDict):
    """How a decode uses the item -> next item prior (the keyword arguments of :func:`evaluate_generative`)."""

    prior: TransitionPrior | None
    prior_weight: float


class GenRecBatches:
    """Training batches. ``history_table``: the items' encoder rows when they differ from their sid
    tokens (item-ID column, :func:`with_item_ids`; a ``cfg.item_dropout`` share of history positions
    gets no ID)."""

    def __init__(
        self,
        item_tokens: np.ndarray,
        train: Sequence[Sequence[int]],
        cfg: GenRecConfig,
        device: torch.device,
        history_table: np.ndarray | None = None,
    ) -> None:
        self.item_tokens = item_tokens  # [N, depth]: the targets' tokens
        self.history_table = item_tokens if history_table is None else history_table  # [N, depth (+ 1)]
        self.id_column = history_table is not None
        self.hist, self.targets, self.seqs = training_examples(train, cfg.max_items)
        self.lengths = np.array([len(h) for h in self.hist])
        self.cfg = cfg
        self.device = device
        self.bucket = LENGTH_BUCKET

    def __len__(self) -> int:
        return math.ceil(len(self.targets) / self.cfg.batch_size)

    def epoch(self, epoch: int) -> Iterator[GenRecBatch]:
        """Shuffled batches of similar history lengths (sorted inside windows of ``bucket``
        batches, then the batches shuffled): padding to the longest history in a random
        batch would multiply the encoder's work several times on short-history data."""
        rng = np.random.default_rng((self.cfg.seed, epoch))
        order = rng.permutation(len(self.targets))
        bs = self.cfg.batch_size
        window = bs * self.bucket
        chunks: list[np.ndarray] = []
        for start in range(0, len(order), window):
            part = order[start : start + window]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            chunks += [part[i : i + bs] for i in range(0, len(part), bs)]
        for j in rng.permutation(len(chunks)):
            idx = chunks[j]
            ids, mask = history_tokens(
                self.history_table,
                [self.hist[i] for i in idx],
                self.cfg.max_items,
                per_item=self.cfg.history_input == "items",
            )
            if self.id_column and self.cfg.item_dropout > 0:  # some positions lose their ID, as new items have none
                ids[..., -1] = np.where(rng.random(ids.shape[:2]) < self.cfg.item_dropout, 0, ids[..., -1])
            labels = self.item_tokens[self.targets[idx]]  # [B, depth]
            yield GenRecBatch(
                torch.from_numpy(ids).to(self.device),
                torch.from_numpy(mask).long().to(self.device),
                torch.from_numpy(labels).to(self.device),
            )


def decode_top(
    model: Any,
    item_tokens: np.ndarray,
    index: PrefixIndex,
    histories: Sequence[Sequence[int]],
    cfg: GenRecConfig,
    k: int = 10,
    prior: TransitionPrior | None = None,
    prior_weight: float = 0.0,
) -> np.ndarray:
    """Top-``k`` item rows per history by constrained beam search: [B, k] (-1 = fewer).
    ``item_tokens``: the items' encoder rows (sid tokens [N, depth]; with the item-ID column for a
    model with item-ID input).
    ``prior``: item -> next item prior added to the beam with ``prior_weight`` (prior-guided decoding)."""
    items, _ = decode_scored(model, item_tokens, index, histories, cfg, k, prior, prior_weight)
    return items


def decode_scored(
    model: Any,
    item_tokens: np.ndarray,
    index: PrefixIndex,
    histories: Sequence[Sequence[int]],
    cfg: GenRecConfig,
    k: int = 10,
    prior: TransitionPrior | None = None,
    prior_weight: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`decode_top` with the beam scores: (item rows [B, k] (-1 = fewer), scores [B, k] (-inf there))."""
    ids, mask = model_history_tokens(model, item_tokens, histories, cfg.max_items)
    step = step_for(model, ids, mask, index.device)
    log_prior = None
    if prior is not None and prior_weight > 0:
        log_prior = torch.from_numpy(prior.history_log_prob(histories)).to(index.device)  # [B, N]
    res = beam_search(
        step,
        index,
        len(histories),
        max(cfg.beam, k),
        k,
        log_prior=log_prior,
        prior_weight=prior_weight,
    )
    return res.items.cpu().numpy(), res.scores.cpu().numpy()


def evaluate_generative(
    model: Any,
    item_tokens: np.ndarray,
    index: PrefixIndex,
    cases: Sequence[EvalCase],
    cfg: GenRecConfig,
    *,
    progress: bool = False,
    k: int = 10,
    prior: TransitionPrior | None = None,
    prior_weight: float = 0.0,
) -> dict[str, float]:
    """Recall/NDCG@{5,10}: the target's rank is its position in the decoded top-k (miss = k).
    ``prior`` / ``prior_weight``: prior-guided decoding (:func:`decode_top`)."""
    if not cases:
        raise ValueError("no cases to evaluate")
    model.eval()
    ranks: list[np.ndarray] = []
    bs = cfg.eval_batch_size
    for start in tqdm(range(0, len(cases), bs), desc="decode", leave=False, disable=not progress):
        batch = cases[start : start + bs]
        histories = [c.history for c in batch]
        top = decode_top(model, item_tokens, index, histories, cfg, k, prior, prior_weight)
        ranks.append(decoded_ranks(top, batch))
    return metrics_from_ranks(np.concatenate(ranks))


def decoded_ranks(top: np.ndarray, cases: Sequence[EvalCase]) -> np.ndarray:
    """Decoded top-k item rows [B, k] -> each case's target rank [B] (not decoded = k)."""
    hit = top == np.array([c.target for c in cases])[:, None]  # [B, k]
    return np.where(hit.any(1), hit.argmax(1), top.shape[1])


# Knobs that only say how long to train: changing them must not stop a run from resuming.
# The prior knobs only change decoding after training.
RUN_LENGTH_FIELDS = (
    "epochs",
    "max_minutes",
    "patience",
    "threads",
    "test_users",
    "eval_batch_size",
    "prior_weights",
    "prior_beta",
    "prior_counts",
)


def run_fingerprint(cfg: GenRecConfig, table: SidTable, split: Split) -> str:
    """Identifies model config + data of a checkpointed run (run-length knobs excluded)."""
    conf = {k: v for k, v in asdict(cfg).items() if k not in RUN_LENGTH_FIELDS}
    # Knobs of inputs a run does not use change nothing (and runs from before they existed resume).
    if not cfg.item_id_input:
        conf.pop("item_id_input")
        conf.pop("item_dropout")
    if cfg.item_id_init == "random":
        conf.pop("item_id_init")
    if cfg.lr_schedule == "cosine":  # the decay spans the configured epochs: another length is another run
        conf["epochs"] = cfg.epochs
    if cfg.lr_schedule == "constant":
        conf.pop("lr_schedule")
        conf.pop("warmup_steps")
    payload = [conf, table.sids.shape, int(table.sids.sum()), len(split.train)]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def train_genrec(
    split: Split,
    table: SidTable,
    cfg: GenRecConfig,
    out_dir: Path,
    ckpt_dir: Path | None = None,
    item_vectors: np.ndarray | None = None,
) -> GenRecResult:
    """Train on ``split.train``, early-stop on validation NDCG@10, score the test cases, save to ``out_dir``.

    ``ckpt_dir``: resumable checkpoints (kept outside the artifact set).
    ``item_vectors``: what the RQ-VAE coded [N, F] (``semantic_ids.codec_inputs``), the start of the
    item ID vectors when ``cfg.item_id_init`` is ``vectors``."""
    if len(table) != split.n_items:
        raise ValueError(f"sid table has {len(table)} rows but the split has {split.n_items} items")
    if cfg.item_id_init not in ITEM_ID_INITS:
        raise ValueError(f"item_id_init must be one of {ITEM_ID_INITS}, got {cfg.item_id_init!r}")
    if cfg.item_id_init == "vectors":
        if not cfg.item_id_input:
            raise ValueError("item_id_init: vectors needs item_id_input (there are no item ID vectors to start)")
        if item_vectors is None or len(item_vectors) != len(table):
            got = "none" if item_vectors is None else f"{len(item_vectors)} rows"
            raise ValueError(f"item_id_init: vectors needs one item vector per sid table row ({len(table)}), got {got}")
    previous_threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(split, table, cfg, out_dir, ckpt_dir, item_vectors)
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    split: Split,
    table: SidTable,
    cfg: GenRecConfig,
    out_dir: Path,
    ckpt_dir: Path | None,
    item_vectors: np.ndarray | None,
) -> GenRecResult:
    device = resolve_device(cfg.device)
    item_tokens = table.tokens()  # [N, depth]
    index = PrefixIndex(table.sids, table.layout, device)
    model = build_genrec(table.layout, cfg, seed=cfg.seed, n_items=len(table))
    if cfg.item_id_init == "vectors" and item_vectors is not None and model.item_id_embedding is not None:
        rows = item_id_init_rows(item_vectors, int(model.config.d_model), float(model.config.initializer_factor))
        with torch.no_grad():  # row 0 stays the zero "no ID" vector
            model.item_id_embedding.weight[1:] = torch.from_numpy(rows)
        logger.info("genrec: item ID vectors start from %d principal components of the coded vectors", rows.shape[1])
    # Encoder rows of the items: sid tokens, plus the ID column for a model with item-ID input.
    history_table = with_item_ids(item_tokens, np.arange(len(table))) if cfg.item_id_input else None
    encoder_table = item_tokens if history_table is None else history_table
    batches = GenRecBatches(item_tokens, split.train, cfg, device, history_table)
    rng = np.random.default_rng(cfg.seed)
    val = split.val
    if cfg.val_users and len(val) > cfg.val_users:
        val = [val[i] for i in sorted(rng.choice(len(val), cfg.val_users, replace=False))]
    logger.info(
        "genrec: %d training examples, %d batches/epoch, %d validation cases, %d parameters",
        len(batches.targets),
        len(batches),
        len(val),
        sum(p.numel() for p in model.parameters()),
    )
    loop = LoopConfig(
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        epochs=cfg.epochs,
        max_minutes=cfg.max_minutes,
        patience=cfg.patience,
        eval_every=cfg.eval_every,
        metric="ndcg@10",
        seed=cfg.seed,
        device=cfg.device,
    )
    fingerprint = run_fingerprint(cfg, table, split)
    total_steps = cfg.epochs * len(batches)
    lr_at(0, cfg, total_steps)  # an unknown schedule fails here, before training

    def schedule(step: int, optimizer: torch.optim.Optimizer) -> None:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg, total_steps)

    result = fit(
        model,
        batches.epoch,
        len(batches),
        genrec_loss,  # type: ignore[arg-type]
        lambda m: evaluate_generative(m, encoder_table, index, val, cfg),
        loop,
        ckpt_dir,
        fingerprint=fingerprint,
        schedule=None if cfg.lr_schedule == "constant" else schedule,
    )
    model.eval()
    test_cases = split.test
    if cfg.test_users and len(test_cases) > cfg.test_users:
        test_cases = [test_cases[i] for i in sorted(rng.choice(len(test_cases), cfg.test_users, replace=False))]
    test = evaluate_generative(model, encoder_table, index, test_cases, cfg, progress=True)
    logger.info("genrec test: %s", {k: round(v, 4) for k, v in test.items()})
    model.save_pretrained(str(out_dir))
    metrics: dict[str, Any] = {
        "test": test,
        "test_cases": len(test_cases),
        "val_best": result.best_metric,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "stop_reason": result.stop_reason,
    }
    if cfg.prior_weights:
        metrics["prior"] = prior_guided_metrics(
            model, encoder_table, index, split, val, test_cases, cfg, result.best_metric
        )
    section = {
        "dir": GENREC_DIR,
        "max_items": cfg.max_items,
        "beam": cfg.beam,
        "metrics": metrics,
        "train_seconds": round(result.train_seconds, 1),
    }
    if "prior" in metrics:  # served by prior-guided decoding when the artifact set has the transition prior
        section["prior_weight"] = metrics["prior"]["weight"]
    return GenRecResult(section, metrics, result.train_seconds, result, model, list(test_cases))


def prior_guided_metrics(
    model: Any,
    encoder_table: np.ndarray,
    index: PrefixIndex,
    split: Split,
    val: Sequence[EvalCase],
    test_cases: Sequence[EvalCase],
    cfg: GenRecConfig,
    val_plain: float,
) -> dict[str, Any]:
    """Prior-guided decoding of the trained model: each of ``cfg.prior_weights`` on the validation
    cases (NDCG@10), the best on test. The prior counts what ``cfg.prior_counts`` names (validation:
    the training sequences either way)."""
    from training.evaluation.prior import counted_sequences

    if any(not math.isfinite(w) or w <= 0 for w in cfg.prior_weights):
        raise ValueError(f"prior_weights must be > 0, got {cfg.prior_weights}")
    counted_sequences(split, test_cases, cfg.prior_counts)  # an unknown prior_counts fails before decoding
    prior = TransitionPrior.from_sequences(
        counted_sequences(split, val, cfg.prior_counts), split.n_items, cfg.prior_beta
    )
    val_ndcg: dict[str, float] = {}
    for w in tqdm(cfg.prior_weights, desc="prior weights", leave=False):
        guided = Guided(prior=prior, prior_weight=w)
        m = evaluate_generative(model, encoder_table, index, val, cfg, **guided)
        val_ndcg[f"{w:g}"] = round(m["ndcg@10"], 4)
        logger.info("genrec + item->next prior, weight %g: val %s", w, {k: round(v, 4) for k, v in m.items()})
    best = max(cfg.prior_weights, key=lambda w: val_ndcg[f"{w:g}"])
    logger.info(
        "prior weight %g picked on validation (ndcg@10 %.4f; %.4f as decoded in training)",
        best,
        val_ndcg[f"{best:g}"],
        val_plain,
    )
    if cfg.prior_counts != "train":
        prior = TransitionPrior.from_sequences(
            counted_sequences(split, test_cases, cfg.prior_counts), split.n_items, cfg.prior_beta
        )
    guided = Guided(prior=prior, prior_weight=best)
    test = evaluate_generative(model, encoder_table, index, test_cases, cfg, progress=True, **guided)
    logger.info("genrec + item->next prior test: %s", {k: round(v, 4) for k, v in test.items()})
    alone = prior_alone_metrics(prior, test_cases)
    in_beam = prior_beam_metrics(prior, index, test_cases, cfg)
    logger.info("item->next prior alone (full ranking) test: %s", {k: round(v, 4) for k, v in alone.items()})
    logger.info("item->next prior alone (in the beam) test: %s", {k: round(v, 4) for k, v in in_beam.items()})
    return {
        "weight": best,
        "beta": cfg.prior_beta,
        "counts": cfg.prior_counts,
        "val_ndcg@10": val_ndcg,
        "test": test,
        "prior_alone_test": alone,
        "prior_beam_test": in_beam,
    }


def prior_alone_metrics(prior: TransitionPrior, cases: Sequence[EvalCase], batch: int = 1024) -> dict[str, float]:
    """The counting model by itself: every item ranked by log p(j | history) (full ranking, ties
    counted in the target's favour as in the seqrec harness), what the guided decoding adds to."""
    ranks = []
    for start in range(0, len(cases), batch):
        part = cases[start : start + batch]
        scores = prior.history_log_prob([c.history for c in part])  # [B, N]
        ranks.append(target_ranks(scores, np.array([c.target for c in part], dtype=np.int64)))
    return metrics_from_ranks(np.concatenate(ranks))


def prior_beam_metrics(
    prior: TransitionPrior, index: PrefixIndex, cases: Sequence[EvalCase], cfg: GenRecConfig, k: int = 10
) -> dict[str, float]:
    """The prior by itself through the same constrained beam as the model (width ``cfg.beam``): a step
    with constant logits, renormalised, so each level follows the prior's mass alone. What prior-guided
    decoding adds to it is what the model adds inside the decoder the service runs (the full ranking of
    :func:`prior_alone_metrics` also keeps items a width-limited beam drops)."""
    vocab = index.layout.vocab_size

    def step(prefix: torch.Tensor) -> torch.Tensor:
        return torch.zeros((*prefix.shape[:2], vocab), device=prefix.device)  # [B, W, V]

    ranks = []
    for start in range(0, len(cases), cfg.eval_batch_size):
        part = cases[start : start + cfg.eval_batch_size]
        lp = torch.from_numpy(prior.history_log_prob([c.history for c in part])).to(index.device)  # [B, N]
        res = beam_search(step, index, len(part), max(cfg.beam, k), k, log_prior=lp, renormalize=True)
        ranks.append(decoded_ranks(res.items.cpu().numpy(), part))
    return metrics_from_ranks(np.concatenate(ranks))


# ------------------------------------------------------------------ quality table

RESULTS_JSON = Path("docs/results/generative.json")
BEAM_JSON = Path("docs/results/generative_beam.json")
# Published TIGER (Rajput et al. 2023), leave-one-out, full catalog: Recall@10 / NDCG@10.
TIGER_PUBLISHED = {"Beauty": (0.0648, 0.0384), "Sports": (0.0400, 0.0225)}


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
    return name


def bench_genrec(
    data_dir: Path,
    sid_cfg: Any,
    cfg: GenRecConfig,
    *,
    vectors_from: Path | None = None,
    work_dir: Path,
    results_json: Path = RESULTS_JSON,
    results_md: Path | None = None,
    hybrid: HybridOptions | None = None,
) -> dict[str, Any]:
    """Semantic IDs + genrec on one dataset folder; appends/replaces its row in ``results_json``
    and rewrites the ``generative`` section of docs/RESULTS.md. With ``hybrid``: also the served dense
    model and hybrid mode on the same split (``training/evaluation/hybrid.py``), an entry in
    ``hybrid.out`` (replaced per dataset)."""
    import time

    from training.data.loader import load_dataset
    from training.data.split import leave_one_out
    from training.reports.page import DEFAULT_PATH
    from training.semantic_ids.build import build_semantic_ids

    dataset = load_dataset(data_dir, allow_empty_titles=True)
    split = leave_one_out(dataset)
    if vectors_from is not None:
        ids = json.loads((vectors_from / "items" / "item_ids.json").read_text())
        if ids != dataset.item_ids:
            raise ValueError(f"{vectors_from} was not built from {data_dir} (item ids differ)")
        vectors = np.load(vectors_from / "items" / "text_vectors.npy")
        logger.info("text vectors from %s", vectors_from)
    else:
        from training.config import EmbedItemsConfig
        from training.encoder.embed import embed_items

        vectors = embed_items(dataset.items, EmbedItemsConfig(threads=cfg.threads))
    t0 = time.perf_counter()
    sid = build_semantic_ids(vectors, sid_cfg, work_dir, split.train)
    sid_seconds = time.perf_counter() - t0
    res = train_genrec(split, sid.table, cfg, work_dir / GENREC_DIR, work_dir / "checkpoints", sid.inputs)
    device = resolve_device(cfg.device)
    test = res.metrics["test"]
    row = {
        "dataset": dataset.name,
        "model": model_name(cfg) + (f", sids from text + co-occurrence ({sid_cfg.cf_dim})" if sid_cfg.cf_dim else ""),
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
    if "prior_alone_test" in res.metrics:  # a model trained next to the prior: the prior by itself beside it
        row |= prior_alone_fields(res.metrics)
    new_rows = [row]
    prior = res.metrics.get("prior")
    if prior is not None:  # the same trained model, decoded with the item -> next prior
        pt = prior["test"]
        new_rows.append(
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
    rows = json.loads(results_json.read_text()) if results_json.is_file() else []
    keys = {(r["dataset"], r["model"]) for r in new_rows}
    rows = [r for r in rows if (r["dataset"], r["model"]) not in keys] + new_rows
    results_json.parent.mkdir(parents=True, exist_ok=True)
    results_json.write_text(json.dumps(rows, indent=2) + "\n")
    hybrid_json = hybrid.out if hybrid is not None else HYBRID_JSON
    if hybrid is not None:
        entry = run_hybrid(hybrid, dataset.name, split, vectors, sid.table, cfg, res, new_rows, work_dir)
        write_hybrid_entry(hybrid.out, entry)
    write_generative_section(results_json, BEAM_JSON, results_md or DEFAULT_PATH, hybrid_json)
    return row


def prior_alone_fields(metrics: dict[str, Any]) -> dict[str, float]:
    """A result row's prior-alone columns from ``prior_alone_test`` / ``prior_beam_test`` metrics."""
    return {
        f"prior_{kind}_{m}": round(metrics[f"prior_{kind}_test"][m], 4)
        for kind in ("alone", "beam")
        for m in ("recall@10", "ndcg@10")
    }


def write_generative_section(
    results_json: Path, beam_json: Path, results_md: Path, hybrid_json: Path = HYBRID_JSON
) -> None:
    """(Re)write the ``generative`` section of the results page from the JSON files."""
    from training.reports.page import write_section

    rows = json.loads(results_json.read_text()) if results_json.is_file() else []
    beam = json.loads(beam_json.read_text()) if beam_json.is_file() else None  # a run or a list of runs
    hybrid = json.loads(hybrid_json.read_text()) if hybrid_json.is_file() else []
    write_section("generative", render_section(rows, beam, hybrid), results_md)


PRIOR_LABEL = "item→next prior"  # in the model label of every row decoded with the prior


def _best_rows(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Per dataset, the best row (NDCG@10) of each kind: the generative model alone, decoded with the
    prior counted on the training sequences, and with the ‡ prior; the prior alone beside them."""
    out: list[str] = []
    kinds = (
        ("the generative model alone", lambda m: PRIOR_LABEL not in m),
        ("with the prior (training counts)", lambda m: PRIOR_LABEL in m and not m.endswith("‡")),
        ("with the prior ‡", lambda m: m.endswith("‡")),
    )
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        parts = []
        for name, keep in kinds:
            cands = [r for r in rows if r["dataset"] == dataset and keep(r["model"])]
            if not cands:
                continue
            b = max(cands, key=lambda r: r["ndcg@10"])
            alone = f" (the prior alone {_alone_cell(b)})" if "prior_alone_recall@10" in b else ""
            parts.append(f"{name} {b['recall@10']:.4f} / {b['ndcg@10']:.4f}{alone}")
        pub = TIGER_PUBLISHED.get(dataset)
        ref = f"; published TIGER {pub[0]:.4f} / {pub[1]:.4f}" if pub else ""
        out.append(f"- {dataset}, best Recall@10 / NDCG@10 by NDCG@10: " + "; ".join(parts) + ref + ".")
    return ["", *out] if out else []


def _alone_cell(r: dict[str, Any]) -> str:
    """The prior alone: full ranking, then through the beam (rows from before that figure: full only)."""
    cell = f"{r['prior_alone_recall@10']:.4f} / {r['prior_alone_ndcg@10']:.4f}"
    if "prior_beam_recall@10" in r:
        cell += f"; in the beam {r['prior_beam_recall@10']:.4f} / {r['prior_beam_ndcg@10']:.4f}"
    return cell


def _guided(b: dict[str, Any]) -> str:
    """The prior-guided decoding cell of a beam benchmark run (runs from before it: -)."""
    if "prior_guided_per_s" not in b:
        return "-"
    return f"{b['prior_guided_per_s']} ({b['prior_guided_cost']:.2f}x the time)"


def _device_label(r: dict[str, Any]) -> str:
    device = str(r.get("device", "cpu"))
    if device.startswith("cpu"):
        return f"cpu, {r.get('threads', '-')} thread(s)"
    return str(r.get("device_name", device))


def render_section(
    rows: Sequence[dict[str, Any]],
    beam: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
    hybrid: Sequence[dict[str, Any]] = (),
) -> str:
    lines = [
        "## Generative recommendation (semantic IDs + TIGER-style T5)",
        "",
        "Command: `make results-genrec` (`recsvc-train bench-genrec --data ../shared/data/Beauty --config"
        " training/configs/genrec_beauty.yaml --threads 1 --cf-dim 64`; rows in `docs/results/generative.json`);"
        " Sports:"
        " `--data ../shared/data/Sports --config training/configs/genrec_sports.yaml`. The CPU configs have the"
        " encoder read one position per history item (`history_input: items`, the sum of the item's sid token"
        " embeddings; 2.8x the training steps/s on Beauty, `make bench-genrec-train`) where TIGER reads one per"
        " sid token; rows without `one encoder position per item` ran with `--history-input tokens`, and CPU rows"
        " without a note with 300 validation users and patience 3 (the earlier configs). Both inputs of a dataset"
        " use the same semantic IDs (same RQ-VAE seed). `item ID input`: a learned vector per trained item added"
        " to its encoder position (`--item-id-input`; new items go in by their sid tokens alone), `(started from"
        " the coded vectors)`: those vectors start as the top principal components of what the RQ-VAE coded"
        " instead of at random (`--item-id-init vectors`); `cosine to 0 over E epochs`: `--lr-schedule cosine`"
        " with `--epochs E`; `user token"
        " (N buckets)`: TIGER's hashed user id before the history (an option removed for no gain:"
        " docs/EXPERIMENTS.md). `sids from text +"
        " co-occurrence (N)`: the RQ-VAE coded each text vector followed by a rank-N PPMI-SVD vector of the item's"
        " co-occurrence in the training sequences (`--cf-dim N`); other rows code the text vectors alone, as TIGER"
        " does. `+ item→next prior (weight w)`: the same trained model as the row without it, decoded with the"
        " first-order item -> next item prior of `service/core/transitions.py` steering the beam at every level"
        " (prior-guided decoding, `service/semantic_ids/beam.py`: final score log p_model + w log p_prior; no"
        " retraining; `--prior-weights`, w picked on validation NDCG@10); the prior counts the training"
        " sequences, or with ‡ everything known at evaluation time (for test also each user's validation item,"
        " `--prior-counts histories`, as the ‡ rows of the sequential table). `prior alone`: the same prior"
        " ranking the full catalog by itself, on the same test cases, and `in the beam`: the prior alone decoded"
        " by the same constrained beam (the row's width, constant model logits, `prior_beam_metrics`), which drops some"
        " items a full ranking keeps; the prior-guided row minus that is what the generative model adds inside"
        " the decoder the service runs."
        " `trained with the item→next prior (weight w)`: the model trained as the second expert next to that"
        " prior (an option removed for no gain: docs/EXPERIMENTS.md): at each sid level the loss is the"
        " cross-entropy of softmax(logits +"
        " w log prior mass of each child code) over the valid codes, the prior counted on the training"
        " sequences with the predicted transition left out; every decode of such a model (its plain row"
        " included) is the renormalised prior-guided beam (`renormalize` in `beam.py`) with the training"
        " counts, so its rows compare with the `+ item→next prior` rows, not with the model alone.",
        "Leave-one-out, full catalog; the target's rank is its position in the constrained beam search's top-10",
        "(not returned = miss). Published TIGER numbers are from the paper (richer item text than here).",
        "`train s` = RQ-VAE + genrec training wall-clock on the listed device (CPU rows: that many threads of",
        "this 2-core machine, shared with other jobs); `budget` = training stopped by its time budget, not by",
        "early stopping. GPU rows ran on a lent machine through the device tool (`--config"
        " training/configs/genrec_gpu.yaml --device cuda`, text vectors computed on the CPU and passed with"
        " `--vectors-from`).",
        "",
        "| dataset | model | Recall@10 | NDCG@10 | unique 3-code prefix | epochs | stop | train s | device"
        " | prior alone R@10 / N@10 (full ranking; in the beam) | TIGER R@10 / N@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pub = TIGER_PUBLISHED.get(r["dataset"])
        ref = f"{pub[0]:.4f} / {pub[1]:.4f}" if pub else "-"
        label = f"{r['model']} ({r['note']})" if r.get("note") else r["model"]
        alone = _alone_cell(r) if "prior_alone_recall@10" in r else "-"
        lines.append(
            f"| {r['dataset']} | {label} | {r['recall@10']:.4f} | {r['ndcg@10']:.4f} | "
            f"{r['unique_prefix_share']:.4f} | {r.get('epochs', '-')} | {r.get('stop_reason', '-')} | "
            f"{r['train_seconds']:.0f} | {_device_label(r)} | {alone} | {ref} |"
        )
    lines += _best_rows(rows)
    lines += render_hybrid(hybrid)
    runs = [beam] if isinstance(beam, dict) else list(beam or [])
    if runs:
        lines += [
            "",
            "Constrained beam search, command: `make bench-beam` (`python -m benchmarks.beam --json`,"
            " `docs/results/generative_beam.json`, one run per device; the GPU row is"
            " `python -m benchmarks.beam --json --device cuda --threads 4 --out docs/results/generative_beam.json`"
            " on a lent machine): our batched decoder vs Hugging Face `generate` with"
            " `prefix_allowed_tokens_fn`, same T5 weights and catalog. `prior-guided`: the same batched search"
            " guided by a per-request item log-prior (given; `prior_guided_cost` = its time / the plain search's).",
            "",
            "`encoder input`: `tokens` = one encoder position per sid token (TIGER), `items` = one per history"
            " item (the sum of its token embeddings; `GenRecConfig.history_input`).",
            "",
            "| device | threads | encoder input | items | batch x beam | batched req/s | generate req/s | speedup |"
            " speedup without the shared encoder pass | same top-k | prior-guided req/s (cost) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for b in runs:
            lines.append(
                f"| {b['device']} | {b['threads']} | {b.get('history_input', 'tokens')} | {b['items']} |"
                f" {b['batch']} x {b['beam']} |"
                f" {b['batched_per_s']} | {b['reference_per_s']} | {b['speedup']}x |"
                f" {b.get('decode_speedup_excl_encoder', '-')}x | {b['same_topk']} | {_guided(b)} |"
            )
    return "\n".join(lines)
