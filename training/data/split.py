"""Leave-one-out split, the standard protocol of the published numbers.

Per user sequence ``s`` (item indices, oldest first):
- training sequence: ``s[:-2]``
- validation case: history ``s[:-2]``, target ``s[-2]``
- test case: history ``s[:-1]``, target ``s[-1]``

Users with fewer than 3 interactions have no evaluation case; their whole
sequence is used for training (as in the reference SASRec code). Items are the
integer positions of ``dataset.items``; ``EvalCase.user`` is the position in
``dataset.sequences``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from training.data.loader import Dataset


@dataclass(frozen=True)
class EvalCase:
    user: int  # index into dataset.sequences
    history: tuple[int, ...]
    target: int


@dataclass
class Split:
    n_items: int
    train: list[list[int]]
    val: list[EvalCase]
    test: list[EvalCase]


def leave_one_out(dataset: Dataset) -> Split:
    """Split every user sequence by the leave-one-out protocol (see the module docstring).

    ``train`` has one entry per user, in ``dataset.sequences`` order, including
    users without evaluation cases and training sequences shorter than 2 (the
    trainer skips what it cannot use).
    """
    index = dataset.item_index
    train: list[list[int]] = []
    val: list[EvalCase] = []
    test: list[EvalCase] = []
    for u, seq in enumerate(dataset.sequences):
        s = [index[i] for i in seq.items]
        if len(s) < 3:
            train.append(s)
            continue
        train.append(s[:-2])
        val.append(EvalCase(u, tuple(s[:-2]), s[-2]))
        test.append(EvalCase(u, tuple(s[:-1]), s[-1]))
    return Split(n_items=dataset.n_items, train=train, val=val, test=test)


def item_counts(sequences: Sequence[Sequence[int]], n_items: int) -> npt.NDArray[np.int64]:
    """Interactions per item in ``sequences``: [n_items]."""
    flat = np.fromiter((i for s in sequences for i in s), dtype=np.int64)  # [n_interactions]
    return np.bincount(flat, minlength=n_items).astype(np.int64)  # [n_items]


def train_item_counts(split: Split) -> npt.NDArray[np.int64]:
    """Interactions per item in the training sequences (the popularity baseline): [n_items]."""
    return item_counts(split.train, split.n_items)


def known_sequences(split: Split, cases: Sequence[EvalCase]) -> list[list[int]]:
    """Every user's interactions known when ``cases`` are scored: the training sequences, with each
    case's user replaced by its history (for test cases, the training sequence plus the validation
    item). Never a case's target. For count-based models that count what is known at evaluation time:
    for validation cases this is ``split.train`` itself."""
    seqs = [list(s) for s in split.train]
    for c in cases:
        if len(c.history) > len(seqs[c.user]):
            seqs[c.user] = list(c.history)
    return seqs


def all_sequences(split: Split) -> list[list[int]]:
    """Every user's whole sequence (training sequence, validation and test items): what a model built
    for serving knows; for count-based parts that are not evaluated on these cases afterwards."""
    seqs = [list(s) for s in split.train]
    for c in split.test:
        seqs[c.user] = [*c.history, c.target]
    return seqs
