"""Contrastive fine-tuning of the text encoder on item metadata (title <-> document).

``recsvc-train finetune-encoder --data DIR [--out RUN] [--config training/configs/encoder/industrial.yaml]``

* Pairs: query = ``service.core.items.query_text`` (the title), document =
  ``document_text(item, include_title=False)`` (brand, categories, features,
  description) -- the same functions the service and the held-out evaluation use.
  Items without a description give no pair and are skipped (count logged).
* Items are split by id into train / validation / test *before* training
  (``eval_encoder.split_items``, saved as ``RUN/split.json``); only train items are
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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence
from tqdm import tqdm

from service.core.items import Item
from training.checkpoint import BEST_NAME, TrainState, cpu_state_dict, load_checkpoint, save_checkpoint, save_weights
from training.config import EncoderFinetuneConfig
from training.data.loader import load_dataset
from training.gradcache import Chunk, gradcache_backward, plain_backward
from training.jobs.eval_encoder import SPLIT_FILE, ItemSplit, has_pair, pair_texts, retrieval_metrics, split_items
from training.loop import make_optimizer, resolve_device, seed_everything
from training.losses import info_nce
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


# ------------------------------------------------------------------ job


def _fingerprint(cfg: EncoderFinetuneConfig, train_ids: Sequence[str], docs: Sequence[str]) -> str:
    keep = {
        k: v
        for k, v in dataclasses.asdict(cfg).items()
        if k not in ("threads", "device", "max_minutes", "patience", "eval_batch_size")
    }
    h = hashlib.sha256(json.dumps(keep, sort_keys=True).encode())
    for iid, d in zip(train_ids, docs, strict=True):
        h.update(iid.encode() + b"\0" + d.encode() + b"\0")
    return h.hexdigest()[:16]


def finetune_encoder(data_dir: Path, out_dir: Path | None, cfg: EncoderFinetuneConfig) -> dict[str, Any]:
    """Run (or resume) fine-tuning; returns the summary also written to ``RUN/train_info.json``."""
    if cfg.batch_size < 2:
        raise ValueError("batch_size must be >= 2 (in-batch negatives)")
    if cfg.chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    if cfg.temperature <= 0:
        raise ValueError("temperature must be > 0")
    previous_threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _finetune(data_dir, out_dir, cfg)
    finally:
        torch.set_num_threads(previous_threads)


def _finetune(data_dir: Path, out_dir: Path | None, cfg: EncoderFinetuneConfig) -> dict[str, Any]:
    t_job = time.perf_counter()
    ds = load_dataset(data_dir, require_sequences=False, allow_empty_titles=True)
    out = Path(out_dir) if out_dir is not None else Path("var/encoder") / ds.name
    out.mkdir(parents=True, exist_ok=True)

    # 1. split by id before anything else; an existing run keeps its split
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
        "split %s: %d train / %d val / %d test items; %d items without description skipped; "
        "%d train items removed (title in %s); %d training pairs, %d validation pairs",
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
    if len(train_items) < 2 or not val_items:
        raise ValueError(f"need >= 2 training pairs and >= 1 validation pair, got {len(train_items)}, {len(val_items)}")

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
    rng = np.random.default_rng([cfg.seed, 1])
    distractors = [train_items[i] for i in sorted(rng.permutation(len(train_items))[: cfg.val_distractors])]
    tq, td = pair_texts(train_items)
    vq, vd = pair_texts(val_items)
    _, xd = pair_texts(distractors)
    kw: dict[str, Any] = {"bottom_layers": k, "device": device, "batch_size": cfg.eval_batch_size}
    train_q = TextView(model, tokenizer, tq, max_length=cfg.query_max_length, desc="cache train titles", **kw)
    train_d = TextView(model, tokenizer, td, max_length=cfg.doc_max_length, desc="cache train docs", **kw)
    val_q = TextView(model, tokenizer, vq, max_length=cfg.query_max_length, desc="cache val titles", **kw)
    val_d = TextView(model, tokenizer, vd + xd, max_length=cfg.doc_max_length, desc="cache val docs", **kw)
    cache_s = time.perf_counter() - t0
    logger.info("tokenized%s in %.1fs", " and cached the frozen bottom" if k else "", cache_s)

    def validate() -> dict[str, float]:
        q = embed_view(model, val_q, np.arange(len(val_q)), cfg.eval_batch_size)  # [V, H]
        d = embed_view(model, val_d, np.arange(len(val_d)), cfg.eval_batch_size)  # [V + X, H]
        return retrieval_metrics(q, d, np.arange(len(val_q), dtype=np.int64))

    # 3. optimizer, schedule, resume
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    n_batches = len(epoch_batches(len(train_items), cfg.batch_size, cfg.seed, 1))
    total_steps = n_batches * cfg.epochs
    fingerprint = _fingerprint(cfg, [it.item_id for it in train_items], td)
    state = load_checkpoint(out, model, optimizer, fingerprint=fingerprint)
    best_weights: dict[str, Tensor] | None = None
    if state is None:
        state = TrainState(fingerprint=fingerprint)
        t_val = time.perf_counter()
        val0 = validate()
        state.elapsed += time.perf_counter() - t_val
        state.history.append({"epoch": 0, "step": 0, "steps": 0, "loss": None, "train_s": 0.0, "val": val0})
        state.best_metric, state.best_epoch = val0[VAL_METRIC], 0
        best_weights = cpu_state_dict(model)
        save_weights(out / BEST_NAME, best_weights, {"epoch": 0, VAL_METRIC: val0[VAL_METRIC]})
        logger.info("epoch 0 (base): val %s", ", ".join(f"{k_} {v:.4f}" for k_, v in val0.items()))
    else:
        if (out / BEST_NAME).is_file():
            best_weights = torch.load(out / BEST_NAME, map_location="cpu", weights_only=True)["model"]
        # A run that stopped on its epoch limit or budget goes on when given more of either.
        if state.finished and state.stop_reason in ("max_epochs", "budget"):
            state.finished = not (state.epoch < cfg.epochs and state.elapsed < cfg.max_minutes * 60.0)
        logger.info("resumed %s at epoch %d (best val %s %.4f)", out, state.epoch, VAL_METRIC, state.best_metric)
    state.elapsed += cache_s
    step = sum(int(h.get("steps", 0)) for h in state.history)
    budget = cfg.max_minutes * 60.0
    encode = make_encode(model, k)

    def loss_fn(q: Tensor, d: Tensor) -> Tensor:
        return info_nce(q, d, cfg.temperature, symmetric=cfg.symmetric)

    # 4. epochs
    while not state.finished:
        if state.epoch >= cfg.epochs:
            state.finished, state.stop_reason = True, "max_epochs"
            break
        if state.elapsed >= budget:
            state.finished, state.stop_reason = True, "budget"
            break
        epoch = state.epoch + 1
        model.train()
        t_ep = time.perf_counter()
        start_elapsed = state.elapsed
        losses: list[float] = []
        cut = False
        bar = tqdm(epoch_batches(len(train_items), cfg.batch_size, cfg.seed, epoch), desc=f"epoch {epoch}", leave=False)
        for batch in bar:
            order = batch[np.argsort(-train_d.lengths[batch], kind="stable")]  # longest docs first: less padding
            parts = [order[s : s + cfg.chunk_size] for s in range(0, len(order), cfg.chunk_size)]
            views = [[train_q.chunk(p) for p in parts], [train_d.chunk(p) for p in parts]]
            lr = lr_at(step, total_steps, cfg.lr, cfg.warmup_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss = (gradcache_backward if cfg.grad_cache else plain_backward)(encode, views, loss_fn)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at epoch {epoch}, step {step}")
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
            optimizer.step()
            step += 1
            losses.append(float(loss))
            bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lr:.2e}")
            if start_elapsed + time.perf_counter() - t_ep >= budget:
                cut = True
                break
        bar.close()
        train_s = time.perf_counter() - t_ep
        val = validate()
        state.elapsed = start_elapsed + time.perf_counter() - t_ep
        state.epoch = epoch
        score = val[VAL_METRIC]
        improved = score > state.best_metric
        if improved:
            state.best_metric, state.best_epoch, state.bad_evals = score, epoch, 0
            best_weights = cpu_state_dict(model)
            save_weights(out / BEST_NAME, best_weights, {"epoch": epoch, VAL_METRIC: score})
        else:
            state.bad_evals += 1
        loss_mean = float(np.mean(losses)) if losses else float("nan")
        state.history.append(
            {
                "epoch": epoch,
                "step": step,
                "steps": len(losses),
                "loss": round(loss_mean, 5),
                "train_s": round(train_s, 1),
                "val": val,
            }
        )
        logger.info(
            "epoch %d: %d steps (total %d), loss %.4f, val %s, %.0fs%s%s",
            epoch,
            len(losses),
            step,
            loss_mean,
            ", ".join(f"{k_} {v:.4f}" for k_, v in val.items()),
            time.perf_counter() - t_ep,
            " [best]" if improved else "",
            " [budget reached]" if cut else "",
        )
        if cut:
            state.finished, state.stop_reason = True, "budget"
        elif state.bad_evals >= cfg.patience:
            state.finished, state.stop_reason = True, "early_stop"
        elif epoch >= cfg.epochs:
            state.finished, state.stop_reason = True, "max_epochs"
        save_checkpoint(out, model, optimizer, state)

    # 5. best weights -> HF folder
    if best_weights is not None:
        model.load_state_dict(best_weights)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    model.save(out / MODEL_DIR, tokenizer)
    info = {
        "dataset": ds.name,
        "data": str(Path(data_dir).resolve()),
        "model_dir": str(out / MODEL_DIR),
        "config": dataclasses.asdict(cfg),
        "loss": f"symmetric in-batch InfoNCE, temperature {cfg.temperature}"
        if cfg.symmetric
        else f"in-batch InfoNCE (query->doc), temperature {cfg.temperature}",
        "n_items": ds.n_items,
        "n_split": {"train": len(split.train), "val": len(split.val), "test": len(split.test)},
        "n_without_description": len(no_pair),
        "n_excluded_by_title": n_excluded,
        "n_train_pairs": len(train_items),
        "n_val_pairs": len(val_items),
        "n_val_candidates": len(val_d),
        "steps_per_epoch": n_batches,
        "steps": step,
        "epochs": state.epoch,
        "best_epoch": state.best_epoch,
        "best_val_" + VAL_METRIC: state.best_metric,
        "stop_reason": state.stop_reason,
        "train_seconds": round(state.elapsed, 1),
        "job_seconds_this_run": round(time.perf_counter() - t_job, 1),
        "threads": torch.get_num_threads(),
        "history": state.history,
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2))
    logger.info(
        "fine-tuning %s: best epoch %d (val %s %.4f), %s after %d epochs / %d steps, %.0fs; model in %s",
        ds.name,
        state.best_epoch,
        VAL_METRIC,
        state.best_metric,
        state.stop_reason,
        state.epoch,
        step,
        state.elapsed,
        out / MODEL_DIR,
    )
    return {k_: v for k_, v in info.items() if k_ != "history"}
