"""Held-out title -> document retrieval: the quality measure of the text encoder.

Items are split by id into train / validation / test *before* any training
(:func:`split_items`). For each test item the query is its title
(``service.core.items.query_text``) and the relevant candidate is its own document
(``document_text(item, include_title=False)``: brand, categories, features,
description). Two candidate pools:

* ``catalog``: the documents of every catalog item with a description -- what a
  service faces, and the pool the issue's goal is stated on;
* ``test``: the test items' documents only (easy: an encoder that merely separates
  a few hundred items already scores high there).

Metrics: Recall@10, NDCG@10 (``training.metrics``: rank = number of candidates
scoring strictly higher) and MRR. Document vectors are cached on disk (the one
embedding cache, ``training/encoder/cache.py``: keyed by the encoder, the max length
and the texts), because encoding ~3.4k long
documents takes minutes on a 2-core CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.core.items import Item, document_text, query_text
from training.config import EmbedItemsConfig
from training.encoder.cache import cached_text_vectors
from training.metrics import metrics_from_ranks, target_ranks
from training.models.text_encoder import TextEncoder, encode_texts, load_tokenizer

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("var/cache/encoder")
SPLIT_FILE = "split.json"
POOLS = ("catalog", "test")
K = 10


# ------------------------------------------------------------------ split


@dataclass(frozen=True)
class ItemSplit:
    """Item ids on each side of the held-out split (in catalog order)."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    seed: int
    train_fraction: float
    val_fraction: float

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
        path.write_text(json.dumps(data))
        return path

    @classmethod
    def load(cls, path: Path) -> ItemSplit:
        data = json.loads(Path(path).read_text())
        return cls(
            train=tuple(data["train"]),
            val=tuple(data["val"]),
            test=tuple(data["test"]),
            seed=int(data["seed"]),
            train_fraction=float(data["train_fraction"]),
            val_fraction=float(data["val_fraction"]),
        )


def _unit_hash(seed: int, item_id: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, item id) alone."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_items(item_ids: Sequence[str], train_fraction: float, val_fraction: float, seed: int) -> ItemSplit:
    """Assign each id to train / val / test by a seeded hash of the id.

    Stable: an item's side depends only on (seed, id), never on the other items,
    so adding items to a catalog never moves an existing one across the split.
    """
    if not (0.0 < train_fraction < 1.0 and 0.0 <= val_fraction < 1.0 and train_fraction + val_fraction < 1.0):
        raise ValueError(
            f"need 0 < train_fraction < 1, 0 <= val_fraction and a positive test share; "
            f"got train {train_fraction}, val {val_fraction}"
        )
    if len(set(item_ids)) != len(item_ids):
        raise ValueError("item ids must be unique to split by id")
    train: list[str] = []
    val: list[str] = []
    test: list[str] = []
    for iid in item_ids:
        u = _unit_hash(seed, iid)
        (train if u < train_fraction else val if u < train_fraction + val_fraction else test).append(iid)
    return ItemSplit(tuple(train), tuple(val), tuple(test), seed, train_fraction, val_fraction)


# ------------------------------------------------------------------ pairs


def has_pair(item: Item) -> bool:
    """An item gives a (title, document) pair when it has a title and a description."""
    return bool(item.title.strip()) and bool(item.description.strip())


def pair_texts(items: Sequence[Item]) -> tuple[list[str], list[str]]:
    """(queries, documents) of ``items``: title and document without the title."""
    return [query_text(it) for it in items], [document_text(it, include_title=False) for it in items]


# ------------------------------------------------------------------ metrics


def retrieval_metrics(queries: np.ndarray, docs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Recall@10, NDCG@10 and MRR of unit ``queries`` [Q, H] against ``docs`` [N, H]; targets [Q] index docs."""
    if queries.shape[0] == 0:
        raise ValueError("no queries to evaluate")
    ranks = np.concatenate(
        [
            target_ranks(queries[s : s + 1024] @ docs.T, targets[s : s + 1024])  # scores [b, N]
            for s in range(0, queries.shape[0], 1024)
        ]
    )
    m = metrics_from_ranks(ranks, (K,))
    return {f"recall@{K}": m[f"recall@{K}"], f"ndcg@{K}": m[f"ndcg@{K}"], "mrr": float((1.0 / (ranks + 1.0)).mean())}


# ------------------------------------------------------------------ cached encoding


# ------------------------------------------------------------------ held-out evaluation


@dataclass
class PoolResult:
    pool: str
    metrics: dict[str, float]
    n_test_items: int
    n_candidates: int


def evaluate_heldout(
    items: Sequence[Item],
    split: ItemSplit,
    model_dir: Path | None,
    *,
    max_length: int = 256,
    query_max_length: int = 32,
    batch_size: int = 64,
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
    device: str = "cpu",
) -> list[PoolResult]:
    """Title -> document retrieval for the test items of ``split`` with the encoder in ``model_dir``."""
    with_pair = [it for it in items if has_pair(it)]
    if not with_pair:
        raise ValueError("no item has both a title and a description: nothing to evaluate")
    test_ids = set(split.test)
    test_items = [it for it in with_pair if it.item_id in test_ids]
    if not test_items:
        raise ValueError("the split's test side has no item with a description")
    model = TextEncoder.from_pretrained(model_dir).to(torch.device(device))
    tokenizer = load_tokenizer(model_dir)
    _, docs = pair_texts(with_pair)
    doc_cfg = EmbedItemsConfig(batch_size=batch_size, max_length=max_length)
    doc_vecs = cached_text_vectors(docs, cache_dir, doc_cfg, model_dir, encoder=(model, tokenizer))  # [N, H]
    queries, _ = pair_texts(test_items)
    q_vecs = encode_texts(model, tokenizer, queries, batch_size=batch_size, max_length=query_max_length)  # [Q, H]
    pos = {it.item_id: i for i, it in enumerate(with_pair)}
    catalog_targets = np.array([pos[it.item_id] for it in test_items], dtype=np.int64)  # [Q]
    out = [PoolResult("catalog", retrieval_metrics(q_vecs, doc_vecs, catalog_targets), len(test_items), len(docs))]
    test_docs = doc_vecs[catalog_targets]  # [Q, H], test item i's document is row i
    out.append(
        PoolResult(
            "test",
            retrieval_metrics(q_vecs, test_docs, np.arange(len(test_items), dtype=np.int64)),
            len(test_items),
            len(test_items),
        )
    )
    for r in out:
        logger.info(
            "%s pool (%d queries, %d candidates): %s",
            r.pool,
            r.n_test_items,
            r.n_candidates,
            ", ".join(f"{k} {v:.4f}" for k, v in r.metrics.items()),
        )
    return out


# ------------------------------------------------------------------ results store


def merge_rows(path: Path, new: list[dict[str, Any]], key: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows of ``path`` whose ``key`` values no new row has, plus ``new`` (other runs' rows survive)."""
    old: list[dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else []
    fresh = {tuple(r[k] for k in key) for r in new}
    return [r for r in old if tuple(r.get(k) for k in key) not in fresh] + new
