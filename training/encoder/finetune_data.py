"""The data side of encoder fine-tuning: which items train and validate, the pairs, the text views, the batches.

* :func:`split_item_pairs`: items split by id before anything else (an existing run keeps
  its split), and the metadata pairs (items with a description) of each side, minus items
  whose title is in another dataset (:func:`excluded_by_title`);
* :func:`behaviour_pairs`: consecutive items of the leave-one-out *training* sequences, and
  the validation cases that choose the epoch;
* a :class:`TextView` is one side of the pairs (titles, documents or item texts), tokenized
  once; with a frozen bottom (``freeze_layers = k > 0``) it also caches the bottom's hidden
  states of every text, so a step runs only the top layers;
* a :class:`PairSource` holds the positive pairs of one kind as rows into its views, and
  :func:`make_epoch_batches` cuts every source into seeded batches (deterministic in seed and
  epoch, so a resumed run sees the same batches).

Used by :mod:`training.encoder.finetune`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from tqdm import tqdm

from service.core.items import Item
from training.config import EncoderFinetuneConfig
from training.data.behaviour_pairs import BehaviourPairs, epoch_pair_order, item_disjoint_batches, transition_pairs
from training.data.loader import Dataset, load_dataset
from training.data.split import EvalCase, leave_one_out
from training.encoder.heldout import SPLIT_FILE, ItemSplit, has_pair, split_items
from training.gradcache import Chunk
from training.models.text_encoder import TextEncoder

logger = logging.getLogger(__name__)


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


class ItemPairs(NamedTuple):
    """The item split and the metadata pairs (items with a description) of each side."""

    split: ItemSplit
    no_pair: list[Item]  # items without a description: no metadata pair
    excluded: set[str]  # ids whose title is in ``cfg.exclude_titles_from``
    n_excluded: int  # training items removed for that
    train: list[Item]
    val: list[Item]


def split_item_pairs(ds: Dataset, cfg: EncoderFinetuneConfig, out: Path) -> ItemPairs:
    """Split items by id before anything else (an existing run keeps its split); metadata pairs per side."""
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
    if cfg.objective == "metadata" and (len(train_items) < 2 or not val_items):
        raise ValueError(f"need >= 2 training pairs and >= 1 validation pair, got {len(train_items)}, {len(val_items)}")
    if cfg.objective == "mixed" and len(train_items) < 2:
        raise ValueError(
            f"objective 'mixed' needs items with descriptions, {ds.name} has {len(train_items)} metadata "
            "training pairs; use objective 'behaviour'"
        )
    return ItemPairs(split, no_pair, excluded, n_excluded, train_items, val_items)


def behaviour_pairs(
    ds: Dataset, cfg: EncoderFinetuneConfig, excluded: set[str]
) -> tuple[BehaviourPairs, list[EvalCase]]:
    """Pairs of consecutive items of the leave-one-out *training* sequences, and the validation cases."""
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
        raise ValueError(f"need >= 2 behaviour pairs and >= 1 validation case, got {len(behaviour)}, {len(val_cases)}")
    return behaviour, val_cases


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


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Seeded shuffle of ``range(n)`` cut into batches; a last batch of fewer than 2 pairs is dropped."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    batches = [perm[s : s + batch_size] for s in range(0, n, batch_size)]
    return [b for b in batches if len(b) >= 2]


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
