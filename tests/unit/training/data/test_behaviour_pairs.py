"""Behaviour pairs: consecutive training items, deduplicated, packed into item-disjoint batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.items import Item
from training.data.behaviour_pairs import epoch_pair_order, item_disjoint_batches, transition_pairs
from training.data.loader import Dataset, Sequence
from training.data.split import leave_one_out


def test_transition_pairs_are_undirected_deduplicated_and_counted() -> None:
    bp = transition_pairs([[1, 2, 3], [3, 2], [4, 4, 5], [6]], exclude=[])
    got = {tuple(p): int(c) for p, c in zip(bp.pairs.tolist(), bp.counts.tolist(), strict=True)}
    assert got == {(1, 2): 1, (2, 3): 2, (4, 5): 1}  # (3, 2) merges into (2, 3); (4, 4) is a repeat
    assert bp.n_transitions == 4 and bp.n_repeats == 1
    assert bp.pairs[0].tolist() == [2, 3]  # most frequent first
    assert (bp.pairs[:, 0] < bp.pairs[:, 1]).all()


def test_transition_pairs_exclude_items_and_handle_no_pairs() -> None:
    bp = transition_pairs([[1, 2, 3]], exclude=[2])
    assert len(bp) == 0 and bp.pairs.shape == (0, 2)


def test_pairs_never_use_validation_or_test_targets(tmp_path: Path) -> None:
    items = [Item(item_id=f"i{k}", title=f"item {k}") for k in range(6)]
    seqs = [Sequence("u0", ["i0", "i1", "i2", "i3"]), Sequence("u1", ["i4", "i5"])]
    ds = Dataset(name="t", root=tmp_path, items=items, sequences=seqs)
    split = leave_one_out(ds)
    pairs = {tuple(p) for p in transition_pairs(split.train).pairs.tolist()}
    # u0: training part i0 i1 (i2 = validation target, i3 = test target); u1 (< 3 items) trains on all
    assert pairs == {(0, 1), (4, 5)}


def test_epoch_pair_order_caps_and_varies_by_epoch() -> None:
    a, b = epoch_pair_order(100, 30, seed=0, epoch=1), epoch_pair_order(100, 30, seed=0, epoch=2)
    assert len(a) == 30 and len(set(a.tolist())) == 30
    assert a.tolist() == epoch_pair_order(100, 30, seed=0, epoch=1).tolist()
    assert a.tolist() != b.tolist()
    assert sorted(epoch_pair_order(10, 0, seed=0, epoch=1).tolist()) == list(range(10))
    with pytest.raises(ValueError, match="cap"):
        epoch_pair_order(10, -1, seed=0, epoch=1)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 15), st.integers(0, 15)).filter(lambda t: t[0] != t[1]), max_size=80),
    st.integers(2, 9),
    st.integers(1, 4),
)
def test_item_disjoint_batches_property(raw: list[tuple[int, int]], batch_size: int, window: int) -> None:
    pairs = np.array(raw, dtype=np.int64).reshape(-1, 2)
    order = np.arange(len(pairs), dtype=np.int64)
    batches = item_disjoint_batches(pairs, order, batch_size, window=window)
    used = np.concatenate(batches) if batches else np.zeros(0, np.int64)
    assert len(set(used.tolist())) == len(used)  # each row at most once
    for b in batches:
        assert 2 <= len(b) <= batch_size
        items = pairs[b].reshape(-1)
        assert len(set(items.tolist())) == len(items)  # no item twice in a batch
    # only rows of dropped single-pair batches are missing, at most one per closed batch
    assert len(pairs) - len(used) <= len(pairs) - 2 * len(batches)


def test_item_disjoint_batches_fill_when_items_allow() -> None:
    pairs = np.array([[2 * i, 2 * i + 1] for i in range(20)], dtype=np.int64)  # all items distinct
    batches = item_disjoint_batches(pairs, np.arange(20), 8)
    assert [len(b) for b in batches] == [8, 8, 4]
    with pytest.raises(ValueError, match="batch_size"):
        item_disjoint_batches(pairs, np.arange(20), 1)
