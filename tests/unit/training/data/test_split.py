"""Leave-one-out split: exact cases on a hand-written dataset, invariants on random ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.items import Item
from training.data.loader import Dataset, Sequence
from training.data.split import EvalCase, leave_one_out, train_item_counts


def make_dataset(n_items: int, sequences: list[list[int]]) -> Dataset:
    items = [Item(item_id=f"i{k}", title=f"item {k}") for k in range(n_items)]
    seqs = [Sequence(user_id=f"u{u}", items=[f"i{k}" for k in s]) for u, s in enumerate(sequences)]
    return Dataset(name="hand", root=Path("."), items=items, sequences=seqs, users=None)


def test_exact_leave_one_out_on_a_hand_written_example() -> None:
    # Item ids are deliberately listed so that the item index differs from the id order in sequences.
    items = [Item(item_id=i, title=i) for i in ["A", "B", "C", "D", "E", "F"]]
    seqs = [
        Sequence("u0", ["A", "B", "C", "D"]),
        Sequence("u1", ["E", "F"]),  # too short: train only
        Sequence("u2", ["B", "C", "A"]),  # shortest user with cases
        Sequence("u3", ["F"]),  # too short: train only
        Sequence("u4", ["D", "D", "E", "A", "C"]),  # repeats stay
    ]
    split = leave_one_out(Dataset("hand", Path("."), items, seqs, None))
    assert split.n_items == 6
    assert split.train == [[0, 1], [4, 5], [1], [5], [3, 3, 4]]
    assert split.val == [
        EvalCase(user=0, history=(0, 1), target=2),
        EvalCase(user=2, history=(1,), target=2),
        EvalCase(user=4, history=(3, 3, 4), target=0),
    ]
    assert split.test == [
        EvalCase(user=0, history=(0, 1, 2), target=3),
        EvalCase(user=2, history=(1, 2), target=0),
        EvalCase(user=4, history=(3, 3, 4, 0), target=2),
    ]
    np.testing.assert_array_equal(train_item_counts(split), [1, 2, 0, 2, 2, 2])


def test_users_shorter_than_three_have_no_cases() -> None:
    split = leave_one_out(make_dataset(3, [[0], [1, 2], [2, 1]]))
    assert split.val == [] and split.test == []
    assert split.train == [[0], [1, 2], [2, 1]]
    assert train_item_counts(split).tolist() == [1, 2, 2]


def test_eval_case_is_hashable_and_frozen() -> None:
    case = EvalCase(user=1, history=(1, 2), target=3)
    assert {case: 1}[EvalCase(1, (1, 2), 3)] == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 9), min_size=1, max_size=12), min_size=1, max_size=20))
def test_split_invariants(sequences: list[list[int]]) -> None:
    split = leave_one_out(make_dataset(10, sequences))
    assert len(split.train) == len(sequences)
    long_users = [u for u, s in enumerate(sequences) if len(s) >= 3]
    assert [c.user for c in split.val] == long_users == [c.user for c in split.test]
    for val, test in zip(split.val, split.test, strict=True):
        full = sequences[val.user]
        assert [*test.history, test.target] == full  # test sees everything before the last item
        assert test.history == (*val.history, val.target)  # validation is one step earlier
        assert list(val.history) == split.train[val.user]  # training never sees a target
    counts = train_item_counts(split)
    assert counts.shape == (10,)
    assert counts.sum() == sum(len(t) for t in split.train)
