"""Training examples and batches of the generative recommender.

Every position of every leave-one-out training sequence is an example (history = the items before
it, last ``max_items``; target = the item), teacher-forced on the target's sid tokens. Batches group
similar history lengths.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from service.semantic_ids.decoder import history_tokens
from training.config import GenRecConfig
from training.models.genrec import GenRecBatch

if TYPE_CHECKING:
    from training.genrec.distill import TeacherTargets


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


class GenRecBatches:
    """Training batches. ``history_table``: the items' encoder rows when they differ from their sid
    tokens (item-ID column, :func:`with_item_ids`; a ``cfg.item_dropout`` share of history positions
    gets no ID). ``teacher``: the dense model's top items per example (:mod:`training.genrec.distill`,
    in the order of :func:`training_examples`), given to each batch as sid tokens and probabilities."""

    def __init__(
        self,
        item_tokens: np.ndarray,
        train: Sequence[Sequence[int]],
        cfg: GenRecConfig,
        device: torch.device,
        history_table: np.ndarray | None = None,
        teacher: TeacherTargets | None = None,
    ) -> None:
        self.item_tokens = item_tokens  # [N, depth]: the targets' tokens
        self.history_table = item_tokens if history_table is None else history_table  # [N, depth (+ 1)]
        self.id_column = history_table is not None
        self.hist, self.targets, self.seqs = training_examples(train, cfg.max_items)
        self.lengths = np.array([len(h) for h in self.hist])
        self.cfg = cfg
        self.device = device
        self.bucket = LENGTH_BUCKET
        if teacher is not None and len(teacher) != len(self.targets):
            raise ValueError(
                f"teacher targets cover {len(teacher)} examples, the training data has {len(self.targets)}"
            )
        self.teacher = teacher

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
            batch = GenRecBatch(
                torch.from_numpy(ids).to(self.device),
                torch.from_numpy(mask).long().to(self.device),
                torch.from_numpy(labels).to(self.device),
            )
            yield batch if self.teacher is None else self._with_teacher(batch, idx)

    def _with_teacher(self, batch: GenRecBatch, idx: np.ndarray) -> GenRecBatch:
        assert self.teacher is not None
        tokens = self.item_tokens[self.teacher.rows[idx]]  # [B, K, depth]
        probs = self.teacher.probs[idx].astype(np.float32)  # [B, K]
        return batch._replace(
            teacher_tokens=torch.from_numpy(tokens).to(self.device),
            teacher_probs=torch.from_numpy(probs).to(self.device),
        )
