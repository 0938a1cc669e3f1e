"""Contrastive fine-tuning of the text encoder on item metadata and/or behaviour.

``recsvc-train finetune-encoder --data DIR [--out RUN] [--config training/configs/encoder/industrial.yaml]``

* ``objective`` (``EncoderFinetuneConfig``): ``metadata`` = the title <-> document pairs
  below; ``behaviour`` = (item_text of a, item_text of b) where b directly follows a in a
  leave-one-out *training* sequence (``training/data/behaviour_pairs.py``: undirected,
  deduplicated, a new seeded subset of ``max_pairs_per_epoch`` each epoch, batches packed so
  no item appears twice: no in-batch false negative from a shared item); ``mixed`` = both,
  each batch of one kind. Behaviour and mixed runs choose the epoch by next-item text
  retrieval on validation targets (last history item -> validation item, all items as
  candidates), never by the test targets.
* Metadata pairs: query = ``service.core.items.query_text`` (the title), document =
  ``document_text(item, include_title=False)`` (brand, categories, features,
  description) -- the same functions the service and the held-out evaluation use.
  Items without a description give no pair and are skipped (count logged).
* Items are split by id into train / validation / test *before* training
  (``training.encoder.heldout.split_items``, saved as ``RUN/split.json``); only train items are
  trained on, validation items choose the epoch (MRR), test items are never read here.
* One shared encoder (all-MiniLM-L6-v2), mean pooling + L2, cosine / temperature,
  in-batch InfoNCE, symmetric (query->doc and doc->query cross-entropies averaged).
* AdamW (no decay on biases / LayerNorm), linear warmup over ``warmup_ratio`` of all
  steps, then linear decay to 0.
* Batch ``batch_size`` (512 reference) on CPU by gradient caching in chunks of
  ``chunk_size`` (``training/gradcache.py``).
* ``freeze_layers = k > 0``: the embeddings and the first k transformer layers stay
  frozen; their hidden states are computed once per text (no dropout) and cached, so
  a step runs only the top layers. This is what makes several epochs fit a 1-thread
  CPU budget; ``freeze_layers = 0`` fine-tunes everything.
* The epoch loop is ``training.loop.fit`` (budget, early stopping, checkpoints) with this
  job's gradient-cached step (``backward_step``) and warmup/decay (``schedule``); epoch 0 is
  the base model, so the kept weights never validate worse than it.
* Deterministic for a seed; ``RUN/last.pt`` after every epoch resumes an interrupted run
  (same config and data), ``RUN/best.pt`` holds the best validated weights.

Output: ``RUN/model/`` (HF format + tokenizer; feed it to ``recsvc-train build
--encoder-dir`` or ``EncoderExportConfig.model_dir``), ``RUN/split.json``,
``RUN/train_info.json`` (config, counts, per-epoch history, ``train_seconds``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence
from tqdm import tqdm

from service.core.items import Item, item_text
from training.config import EncoderFinetuneConfig
from training.data.behaviour_pairs import BehaviourPairs, epoch_pair_order, item_disjoint_batches, transition_pairs
from training.data.loader import load_dataset
from training.data.split import EvalCase, leave_one_out
from training.encoder.heldout import SPLIT_FILE, ItemSplit, has_pair, pair_texts, retrieval_metrics, split_items
from training.gradcache import Chunk, gradcache_backward, plain_backward
from training.loop import LoopConfig, fit, resolve_device, seed_everything
from training.losses import info_nce
from training.metrics import metrics_from_ranks, target_ranks
from training.models.text_encoder import TextEncoder, load_tokenizer

logger = logging.getLogger(__name__)

INFO_FILE = "train_info.json"
MODEL_DIR = "model"
VAL_METRIC = "mrr"


# ------------------------------------------------------------------ data


def normalize_title(title: str) -> str:
    return re.sub(r"\s+", " ", title.strip().lower())


def title_stems(title: str) -> set[str]:
    """The normalized title and each of its sentence prefixes ("a. b. c." -> "a", "a. b", "a. b. c").

    ``Scientific`` titles are "title. categories. brand." strings built from the same
    catalog, so the Industrial title of the same product is one of these stems.
    """
    t = normalize_title(title)
    stems = {t.rstrip(".")} if t else set()
    for m in re.finditer(r"\.", t):
        stem = t[: m.start()].strip()
        if stem:
            stems.add(stem)
    return stems


def excluded_by_title(items: Sequence[Item], other_dataset: Path) -> set[str]:
    """Ids of ``items`` whose title is an item title (or its first sentences) of the dataset at ``other_dataset``."""
    other = load_dataset(other_dataset, require_sequences=False, allow_empty_titles=True)
    stems: set[str] = set()
    for it in other.items:
        stems |= title_stems(it.title)
    return {it.item_id for it in items if normalize_title(it.title).rstrip(".") in stems and it.title.strip()}


class TextView:
    """One side of the pairs (titles or documents), tokenized once, batched into :class:`Chunk` s.

    With ``bottom_layers > 0`` the frozen bottom's hidden states of every text are
    computed once here and chunks carry them ([b, L, H]) instead of token ids.
    """

    def __init__(
        self,
        model: TextEncoder,
        tokenizer: Any,
        texts: Sequence[str],
        *,
        max_length: int,
        bottom_layers: int,
        device: torch.device,
        batch_size: int = 64,
        desc: str = "cache",
    ) -> None:
        enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
        self.ids: list[Tensor] = [torch.tensor(x, dtype=torch.long) for x in enc["input_ids"]]  # [L_i] each
        self.lengths = np.array([len(x) for x in self.ids], dtype=np.int64)
        self.pad_id = int(tokenizer.pad_token_id or 0)
        self.bottom_layers = bottom_layers
        self.device = device
        self.hidden: list[Tensor] | None = None
        if bottom_layers > 0:
            self.hidden = [torch.empty(0)] * len(self.ids)
            order = np.argsort(-self.lengths, kind="stable")
            was_training = model.training
            model.eval()
            with torch.inference_mode():
                for s in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
                    idx = order[s : s + batch_size]
                    ids, mask = self._pad_ids(idx)
                    h = model.bottom(ids, mask, bottom_layers)  # [b, L, H]
                    for row, i in enumerate(idx):
                        self.hidden[i] = h[row, : self.lengths[i]].to("cpu").clone()  # [L_i, H]
            model.train(was_training)

    def __len__(self) -> int:
        return len(self.ids)

    def _pad_ids(self, idx: Sequence[int] | np.ndarray) -> tuple[Tensor, Tensor]:
        seqs = [self.ids[i] for i in idx]
        ids = pad_sequence(seqs, batch_first=True, padding_value=self.pad_id)  # [b, L]
        mask = pad_sequence([torch.ones_like(s) for s in seqs], batch_first=True, padding_value=0)  # [b, L]
        return ids.to(self.device), mask.to(self.device)

    def chunk(self, idx: Sequence[int] | np.ndarray) -> Chunk:
        if self.hidden is None:
            ids, mask = self._pad_ids(idx)
            return Chunk(ids, mask)
        seqs = [self.ids[i] for i in idx]
        mask = pad_sequence([torch.ones_like(s) for s in seqs], batch_first=True, padding_value=0)  # [b, L]
        hidden = pad_sequence([self.hidden[i] for i in idx], batch_first=True)  # [b, L, H]
        return Chunk(hidden.to(self.device), mask.to(self.device))


def make_encode(model: TextEncoder, bottom_layers: int) -> Any:
    def encode(chunk: Chunk) -> Tensor:
        if bottom_layers > 0:
            return model.forward_from(chunk.inputs, chunk.attention_mask, bottom_layers)  # [b, H]
        return model(chunk.inputs, chunk.attention_mask)  # [b, H]

    return encode


def embed_view(model: TextEncoder, view: TextView, idx: np.ndarray, chunk_size: int) -> np.ndarray:
    """Unit vectors of ``view`` rows ``idx`` with the current weights (eval mode). -> [n, H]"""
    encode = make_encode(model, view.bottom_layers)
    order = idx[np.argsort(-view.lengths[idx], kind="stable")]
    out: dict[int, np.ndarray] = {}
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(order), chunk_size):
            part = order[s : s + chunk_size]
            vecs = encode(view.chunk(part)).float().cpu().numpy()  # [b, H]
            out.update(zip(part.tolist(), vecs, strict=True))
    model.train(was_training)
    return np.stack([out[int(i)] for i in idx]) if len(idx) else np.zeros((0, model.dim), np.float32)


def lr_at(step: int, total: int, base_lr: float, warmup_ratio: float) -> float:
    """Linear warmup over ceil(warmup_ratio * total) steps, then linear decay to 0 at ``total``. step is 0-based."""
    warmup = max(1, math.ceil(warmup_ratio * total))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    return base_lr * max(0.0, (total - step) / max(1, total - warmup))


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Seeded shuffle of ``range(n)`` cut into batches; a last batch of fewer than 2 pairs is dropped."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    batches = [perm[s : s + batch_size] for s in range(0, n, batch_size)]
    return [b for b in batches if len(b) >= 2]


# ------------------------------------------------------------------ pair sources


OBJECTIVES = ("metadata", "behaviour", "mixed")


@dataclass
class PairSource:
    """Positive pairs of one kind: row i of ``pairs`` [P, 2] = (row of ``query``, row of ``doc``)."""

    name: str  # "metadata" | "behaviour"
    query: TextView
    doc: TextView
    pairs: np.ndarray  # [P, 2] int64
    cap: int  # pairs per epoch (0 = all)
    item_disjoint: bool  # pack batches so that no item appears twice (behaviour: query and doc share a view)


class PairBatch(NamedTuple):
    source: int  # index into the job's sources
    rows: np.ndarray  # [b] rows of that source's pairs


def make_epoch_batches(sources: Sequence[PairSource], batch_size: int, seed: int, epoch: int) -> list[PairBatch]:
    """The batches of one epoch: per source its (capped) pairs in seeded order, batched, then all interleaved.

    A batch never mixes sources (a metadata title is no negative for an item text and vice versa).
    Deterministic in (seed, epoch), so a resumed run sees the same batches.
    """
    out: list[PairBatch] = []
    for s, src in enumerate(sources):
        if src.item_disjoint:
            order = epoch_pair_order(len(src.pairs), src.cap, seed, epoch)
            batches = item_disjoint_batches(src.pairs, order, batch_size)
        else:
            batches = epoch_batches(len(src.pairs), batch_size, seed, epoch)
        out += [PairBatch(s, b) for b in batches]
    if len(sources) > 1:
        perm = np.random.default_rng([seed, epoch, 11]).permutation(len(out))
        out = [out[i] for i in perm]
    return out


def next_item_metrics(item_vecs: np.ndarray, cases: Sequence[EvalCase]) -> dict[str, float]:
    """Text retrieval of the next item: query = the last history item's vector, candidates = every item.

    item_vecs [N, H] unit vectors. The query item itself is not a candidate (it would score 1.0)
    unless it is the target. -> Recall@10, NDCG@10, MRR
    """
    if not cases:
        raise ValueError("no validation cases")
    last = np.array([c.history[-1] for c in cases], dtype=np.int64)  # [V]
    targets = np.array([c.target for c in cases], dtype=np.int64)  # [V]
    ranks: list[np.ndarray] = []
    for s in range(0, len(cases), 1024):
        q, t = last[s : s + 1024], targets[s : s + 1024]
        scores = item_vecs[q] @ item_vecs.T  # [b, N]
        self_hit = q != t
        scores[np.flatnonzero(self_hit), q[self_hit]] = -2.0  # below any cosine
        ranks.append(target_ranks(scores, t))
    r = np.concatenate(ranks)  # [V]
    m = metrics_from_ranks(r, (10,))
    return {"recall@10": m["recall@10"], "ndcg@10": m["ndcg@10"], "mrr": float((1.0 / (r + 1.0)).mean())}


# ------------------------------------------------------------------ job


def _fingerprint(cfg: EncoderFinetuneConfig, sources: Sequence[PairSource], texts: Sequence[str]) -> str:
    keep = {
        k: v
        for k, v in dataclasses.asdict(cfg).items()
        if k not in ("threads", "device", "max_minutes", "patience", "eval_batch_size")
    }
    h = hashlib.sha256(json.dumps(keep, sort_keys=True).encode())
    for src in sources:
        h.update(src.name.encode() + b"\0" + np.ascontiguousarray(src.pairs).tobytes())
    for t in texts:
        h.update(t.encode() + b"\0")
    return h.hexdigest()[:16]


def finetune_encoder(data_dir: Path, out_dir: Path | None, cfg: EncoderFinetuneConfig) -> dict[str, Any]:
    """Run (or resume) fine-tuning; returns the summary also written to ``RUN/train_info.json``."""
    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {cfg.objective!r}")
    if cfg.batch_size < 2:
        raise ValueError("batch_size must be >= 2 (in-batch negatives)")
    if cfg.chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    if cfg.temperature <= 0:
        raise ValueError("temperature must be > 0")
    if cfg.max_pairs_per_epoch < 0:
        raise ValueError(f"max_pairs_per_epoch must be >= 0 (0 = all), got {cfg.max_pairs_per_epoch}")
    previous_threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _finetune(data_dir, out_dir, cfg)
    finally:
        torch.set_num_threads(previous_threads)


def _finetune(data_dir: Path, out_dir: Path | None, cfg: EncoderFinetuneConfig) -> dict[str, Any]:
    t_job = time.perf_counter()
    use_meta = cfg.objective in ("metadata", "mixed")
    use_behaviour = cfg.objective in ("behaviour", "mixed")
    ds = load_dataset(data_dir, require_sequences=use_behaviour, allow_empty_titles=True)
    out = Path(out_dir) if out_dir is not None else Path("var/encoder") / ds.name
    out.mkdir(parents=True, exist_ok=True)

    # 1. split items by id before anything else; an existing run keeps its split
    split_path = out / SPLIT_FILE
    split = split_items(ds.item_ids, cfg.train_fraction, cfg.val_fraction, cfg.split_seed)
    if split_path.is_file() and ItemSplit.load(split_path) != split:
        raise ValueError(f"{split_path} holds a different split than this config; use another --out")
    split.save(split_path)
    side = {iid: "train" for iid in split.train} | {iid: "val" for iid in split.val}
    no_pair = [it for it in ds.items if not has_pair(it)]
    excluded: set[str] = set()
    if cfg.exclude_titles_from:
        excluded = excluded_by_title(ds.items, Path(cfg.exclude_titles_from))
    train_items = [it for it in ds.items if side.get(it.item_id) == "train" and has_pair(it)]
    n_excluded = sum(1 for it in train_items if it.item_id in excluded)
    train_items = [it for it in train_items if it.item_id not in excluded]
    val_items = [it for it in ds.items if side.get(it.item_id) == "val" and has_pair(it)]
    logger.info(
        "split %s: %d train / %d val / %d test items; %d items without description; "
        "%d train items removed (title in %s); %d metadata training pairs, %d metadata validation pairs",
        ds.name,
        len(split.train),
        len(split.val),
        len(split.test),
        len(no_pair),
        n_excluded,
        cfg.exclude_titles_from or "-",
        len(train_items),
        len(val_items),
    )
    if use_meta and cfg.objective == "metadata" and (len(train_items) < 2 or not val_items):
        raise ValueError(f"need >= 2 training pairs and >= 1 validation pair, got {len(train_items)}, {len(val_items)}")
    if cfg.objective == "mixed" and len(train_items) < 2:
        raise ValueError(
            f"objective 'mixed' needs items with descriptions, {ds.name} has {len(train_items)} metadata "
            "training pairs; use objective 'behaviour'"
        )

    # behaviour pairs: consecutive items of the leave-one-out training sequences only
    behaviour: BehaviourPairs | None = None
    val_cases: list[EvalCase] = []
    if use_behaviour:
        loo = leave_one_out(ds)
        index = ds.item_index
        behaviour = transition_pairs(loo.train, exclude=[index[i] for i in excluded])
        rng_val = np.random.default_rng([cfg.seed, 2])
        keep = np.sort(rng_val.permutation(len(loo.val))[: cfg.behaviour_val_users or len(loo.val)])
        val_cases = [loo.val[i] for i in keep]
        logger.info(
            "behaviour pairs %s: %d transitions (%d repeats skipped) -> %d unique undirected pairs, "
            "%s per epoch; %d validation cases (last history item -> validation target)",
            ds.name,
            behaviour.n_transitions,
            behaviour.n_repeats,
            len(behaviour),
            cfg.max_pairs_per_epoch or "all",
            len(val_cases),
        )
        if len(behaviour) < 2 or not val_cases:
            raise ValueError(
                f"need >= 2 behaviour pairs and >= 1 validation case, got {len(behaviour)}, {len(val_cases)}"
            )

    # 2. model, frozen bottom, cached views
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    model_dir = Path(cfg.base_model_dir) if cfg.base_model_dir else None
    model = TextEncoder.from_pretrained(model_dir).to(device)
    tokenizer = load_tokenizer(model_dir)
    k = cfg.freeze_layers
    if not 0 <= k < model.n_layers:
        raise ValueError(f"freeze_layers must be in [0, {model.n_layers - 1}], got {k}")
    if k > 0:
        frozen: list[nn.Module] = [model.backbone.embeddings, *model._layers()[:k]]  # type: ignore[list-item]
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(
        "encoder: %d layers, %d frozen (+ embeddings if > 0), %d trainable parameters", model.n_layers, k, n_trainable
    )

    t0 = time.perf_counter()
    kw: dict[str, Any] = {"bottom_layers": k, "device": device, "batch_size": cfg.eval_batch_size}
    sources: list[PairSource] = []
    fingerprint_texts: list[str] = []
    validate_views: dict[str, Any] = {}
    if use_meta:
        rng = np.random.default_rng([cfg.seed, 1])
        distractors = [train_items[i] for i in sorted(rng.permutation(len(train_items))[: cfg.val_distractors])]
        tq, td = pair_texts(train_items)
        train_q = TextView(model, tokenizer, tq, max_length=cfg.query_max_length, desc="cache train titles", **kw)
        train_d = TextView(model, tokenizer, td, max_length=cfg.doc_max_length, desc="cache train docs", **kw)
        ident = np.repeat(np.arange(len(train_items), dtype=np.int64)[:, None], 2, axis=1)  # [P, 2]
        sources.append(PairSource("metadata", train_q, train_d, ident, 0, item_disjoint=False))
        fingerprint_texts += [it.item_id for it in train_items] + td
        if cfg.objective == "metadata":
            vq, vd = pair_texts(val_items)
            _, xd = pair_texts(distractors)
            validate_views["val_q"] = TextView(
                model, tokenizer, vq, max_length=cfg.query_max_length, desc="cache val titles", **kw
            )
            validate_views["val_d"] = TextView(
                model, tokenizer, vd + xd, max_length=cfg.doc_max_length, desc="cache val docs", **kw
            )
    if behaviour is not None:
        texts = [item_text(it) for it in ds.items]
        items_view = TextView(
            model, tokenizer, texts, max_length=cfg.behaviour_max_length, desc="cache item texts", **kw
        )
        sources.append(
            PairSource(
                "behaviour", items_view, items_view, behaviour.pairs, cfg.max_pairs_per_epoch, item_disjoint=True
            )
        )
        fingerprint_texts += texts
        validate_views["items"] = items_view
    cache_s = time.perf_counter() - t0
    logger.info("tokenized%s in %.1fs", " and cached the frozen bottom" if k else "", cache_s)

    def validate(m: nn.Module) -> dict[str, float]:
        if "items" in validate_views:  # behaviour / mixed: next-item text retrieval on validation targets
            view: TextView = validate_views["items"]
            vecs = embed_view(model, view, np.arange(len(view)), cfg.eval_batch_size)  # [N, H]
            return next_item_metrics(vecs, val_cases)
        val_q: TextView = validate_views["val_q"]
        val_d: TextView = validate_views["val_d"]
        q = embed_view(model, val_q, np.arange(len(val_q)), cfg.eval_batch_size)  # [V, H]
        d = embed_view(model, val_d, np.arange(len(val_d)), cfg.eval_batch_size)  # [V + X, H]
        return retrieval_metrics(q, d, np.arange(len(val_q), dtype=np.int64))

    # 3. the shared loop (training/loop.fit): schedule, gradient-cached steps, early stop, resume
    n_batches = len(make_epoch_batches(sources, cfg.batch_size, cfg.seed, 1))
    if n_batches == 0:
        raise ValueError("no training batch of >= 2 pairs")
    total_steps = n_batches * cfg.epochs
    encode = make_encode(model, k)

    def loss_fn(q: Tensor, d: Tensor) -> Tensor:
        return info_nce(q, d, cfg.temperature, symmetric=cfg.symmetric)

    def backward_step(m: nn.Module, batch: PairBatch) -> Tensor:
        src = sources[batch.source]
        q_rows, d_rows = src.pairs[batch.rows, 0], src.pairs[batch.rows, 1]  # [b] each
        order = np.argsort(-src.doc.lengths[d_rows], kind="stable")  # longest docs first: less padding
        q_rows, d_rows = q_rows[order], d_rows[order]
        parts = [slice(s, s + cfg.chunk_size) for s in range(0, len(order), cfg.chunk_size)]
        views = [[src.query.chunk(q_rows[p]) for p in parts], [src.doc.chunk(d_rows[p]) for p in parts]]
        return (gradcache_backward if cfg.grad_cache else plain_backward)(encode, views, loss_fn)

    def schedule(step: int, optimizer: torch.optim.Optimizer) -> None:
        lr = lr_at(step, total_steps, cfg.lr, cfg.warmup_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr

    loop_cfg = LoopConfig(
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        epochs=cfg.epochs,
        max_minutes=cfg.max_minutes,
        patience=cfg.patience,
        eval_every=1,
        metric=VAL_METRIC,
        grad_clip=cfg.grad_clip,
        seed=cfg.seed,
        device=cfg.device,
    )
    result = fit(
        model,
        lambda epoch: make_epoch_batches(sources, cfg.batch_size, cfg.seed, epoch),
        n_batches,
        None,
        validate,
        loop_cfg,
        out,
        fingerprint=_fingerprint(cfg, sources, fingerprint_texts),
        backward_step=backward_step,
        schedule=schedule,
        validate_initial=True,
    )

    # 4. best weights (fit restored them) -> HF folder
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    model.save(out / MODEL_DIR, tokenizer)
    steps = sum(int(h.get("steps", 0)) for h in result.history)
    loss_name = "symmetric in-batch InfoNCE" if cfg.symmetric else "in-batch InfoNCE (query->doc)"
    info = {
        "dataset": ds.name,
        "data": str(Path(data_dir).resolve()),
        "model_dir": str(out / MODEL_DIR),
        "config": dataclasses.asdict(cfg),
        "objective": cfg.objective,
        "loss": f"{loss_name}, temperature {cfg.temperature}",
        "validation": "next-item text retrieval (last history item -> validation target, all items)"
        if "items" in validate_views
        else "title -> document retrieval (validation items + distractors)",
        "n_items": ds.n_items,
        "n_split": {"train": len(split.train), "val": len(split.val), "test": len(split.test)},
        "n_without_description": len(no_pair),
        "n_excluded_by_title": n_excluded,
        "n_train_pairs": len(train_items) if use_meta else 0,
        "n_val_pairs": len(val_items) if cfg.objective == "metadata" else 0,
        "n_val_candidates": len(validate_views["val_d"]) if "val_d" in validate_views else ds.n_items,
        "n_behaviour_pairs": len(behaviour) if behaviour is not None else 0,
        "n_behaviour_transitions": behaviour.n_transitions if behaviour is not None else 0,
        "n_val_cases": len(val_cases),
        "steps_per_epoch": n_batches,
        "steps": steps,
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "best_val_" + VAL_METRIC: result.best_metric,
        "stop_reason": result.stop_reason,
        "cache_seconds": round(cache_s, 1),
        "train_seconds": round(result.train_seconds, 1),
        "job_seconds_this_run": round(time.perf_counter() - t_job, 1),
        "threads": torch.get_num_threads(),
        "history": result.history,
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2))
    logger.info(
        "fine-tuning %s (%s): best epoch %d (val %s %.4f), %s after %d epochs / %d steps, %.0fs; model in %s",
        ds.name,
        cfg.objective,
        result.best_epoch,
        VAL_METRIC,
        result.best_metric,
        result.stop_reason,
        result.epochs,
        steps,
        result.train_seconds,
        out / MODEL_DIR,
    )
    return {k_: v for k_, v in info.items() if k_ != "history"}
