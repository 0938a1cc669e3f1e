"""Behaviour pairs for contrastive encoder training: items that follow each other.

A positive pair is (item a, item b) where b directly follows a in a *training*
sequence of the leave-one-out split (``training.data.split.leave_one_out``:
``s[:-2]`` per user), so validation and test targets are never paired with their
history. Pairs are undirected (the encoder's InfoNCE is symmetric): (a, b) and
(b, a) are one pair, stored as (min, max) with how often either was seen; a
repeat (a, a) is no pair.

Batches of pairs for in-batch negatives should not hold the same item twice: if
item x is in two pairs of a batch, x's partner in one pair is scored as a
negative of x in the other (a false negative). :func:`item_disjoint_batches`
packs pairs greedily so that every item appears at most once per batch.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class BehaviourPairs:
    """Unique undirected item pairs of consecutive training interactions."""

    pairs: npt.NDArray[np.int64]  # [P, 2] item indices, pairs[:, 0] < pairs[:, 1]
    counts: npt.NDArray[np.int64]  # [P] transitions (either direction) behind each pair
    n_transitions: int  # consecutive (a, b) with a != b seen in the training sequences
    n_repeats: int  # consecutive (a, a) skipped

    def __len__(self) -> int:
        return int(self.pairs.shape[0])


def transition_pairs(train: Iterable[Sequence[int]], *, exclude: Iterable[int] = ()) -> BehaviourPairs:
    """Deduplicated undirected pairs of consecutive items in ``train`` sequences.

    ``exclude``: item indices that must not appear in any pair (e.g. items held out of
    encoder training). Pairs are sorted by (count desc, a, b) so the result is
    deterministic.
    """
    banned = set(exclude)
    counter: Counter[tuple[int, int]] = Counter()
    n_transitions = n_repeats = 0
    for seq in train:
        for a, b in itertools.pairwise(seq):
            if a == b:
                n_repeats += 1
                continue
            if a in banned or b in banned:
                continue
            n_transitions += 1
            counter[(a, b) if a < b else (b, a)] += 1
    if not counter:
        return BehaviourPairs(np.zeros((0, 2), np.int64), np.zeros(0, np.int64), n_transitions, n_repeats)
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    pairs = np.array([k for k, _ in ranked], dtype=np.int64)  # [P, 2]
    counts = np.array([c for _, c in ranked], dtype=np.int64)  # [P]
    return BehaviourPairs(pairs, counts, n_transitions, n_repeats)


def epoch_pair_order(n_pairs: int, cap: int, seed: int, epoch: int) -> npt.NDArray[np.int64]:
    """The pair rows one epoch trains on: a seeded permutation, cut to ``cap`` rows when ``cap > 0``.

    A different subset each epoch, so a capped run still sees every pair over enough epochs.
    """
    if cap < 0:
        raise ValueError(f"pair cap must be >= 0 (0 = all pairs), got {cap}")
    perm = np.random.default_rng([seed, epoch, 7]).permutation(n_pairs).astype(np.int64)
    return perm[:cap] if cap else perm


def item_disjoint_batches(
    pairs: npt.NDArray[np.int64], order: npt.NDArray[np.int64], batch_size: int, *, window: int = 8
) -> list[npt.NDArray[np.int64]]:
    """Pack pair rows ``order`` (of ``pairs`` [P, 2]) into batches where no item appears twice.

    Greedy first fit over at most ``window`` open batches: a pair goes into the oldest open
    batch that has neither of its items; if none has room, a new batch opens (the oldest is
    closed when more than ``window`` are open). Batches come in the order they were
    closed; batches of fewer than 2 pairs are dropped (no negatives). Every returned
    row is used once.
    """
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (in-batch negatives), got {batch_size}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    open_rows: list[list[int]] = []
    open_items: list[set[int]] = []
    done: list[list[int]] = []
    for row in order.tolist():
        a, b = int(pairs[row, 0]), int(pairs[row, 1])
        placed = False
        for j, items in enumerate(open_items):
            if a not in items and b not in items:
                open_rows[j].append(row)
                items.update((a, b))
                if len(open_rows[j]) == batch_size:
                    done.append(open_rows.pop(j))
                    open_items.pop(j)
                placed = True
                break
        if not placed:
            open_rows.append([row])
            open_items.append({a, b})
            if len(open_rows) > window:
                done.append(open_rows.pop(0))
                open_items.pop(0)
    done.extend(open_rows)
    return [np.array(rows, dtype=np.int64) for rows in done if len(rows) >= 2]
