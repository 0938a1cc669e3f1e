"""Dataset summary and the first-order transition baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.core.items import Item
from training.data.loader import Dataset, Sequence
from training.data.split import EvalCase, leave_one_out, train_item_counts
from training.data.stats import TransitionModel, main, summarize
from training.metrics import PopularityModel


def _dataset(seqs: list[list[int]], n_items: int = 5) -> Dataset:
    items = [Item(item_id=f"i{k}", title=f"item {k}") for k in range(n_items)]
    return Dataset("t", Path("."), items, [Sequence(f"u{u}", [f"i{k}" for k in s]) for u, s in enumerate(seqs)])


def test_transition_scores_are_counts_plus_popularity_tie_break() -> None:
    train = [[0, 1, 2], [0, 1], [0, 3], [1, 2]]
    counts = np.bincount([i for s in train for i in s], minlength=5)
    pop = PopularityModel(counts)
    model = TransitionModel(train, 5, pop)
    scores = model([EvalCase(0, (4, 0), 9), EvalCase(1, (1,), 9), EvalCase(2, (), 9), EvalCase(3, (4,), 9)])
    assert scores.shape == (4, 5)
    np.testing.assert_array_equal(np.floor(scores[0]), [0, 2, 0, 1, 0])  # after item 0: 1 twice, 3 once
    np.testing.assert_array_equal(np.floor(scores[1]), [0, 0, 2, 0, 0])  # after item 1: 2 twice
    for row in scores[2:]:  # no history, or an item never followed by anything: popularity order
        assert np.all(row < 1.0)
        assert list(np.argsort(-row)) == list(pop.top(5))


def test_summarize_counts_and_baselines_order() -> None:
    # Every user walks k -> k+1 -> k+2 -> k+3 (mod 8): the next item always follows the last one.
    seqs = [[(k + j) % 8 for j in range(4)] for k in range(8)] + [[0, 1]]
    ds = _dataset(seqs, n_items=9)  # item 8 is in no sequence
    s = summarize(ds, 0.5)
    assert (s.n_items, s.n_users, s.n_interactions, s.eval_users) == (9, 9, 34, 8)
    assert (s.seq_len_min, s.seq_len_max, s.items_in_no_sequence) == (2, 4, 1)
    assert s.load_seconds == 0.5
    assert s.baselines["transitions"]["test"]["ndcg@5"] == 1.0  # every target ranked first
    assert s.baselines["transitions"]["val"]["recall@5"] == 1.0
    assert s.baselines["popularity"]["test"]["ndcg@5"] < 0.7
    assert train_item_counts(leave_one_out(ds)).sum() == 34 - 2 * 8


def test_cli_prints_json_and_reports_bad_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "d"
    root.mkdir()
    (root / "items.jsonl").write_text(
        "".join(json.dumps({"item_id": f"i{k}", "title": f"t{k}"}) + "\n" for k in range(3))
    )
    (root / "sequences.jsonl").write_text(json.dumps({"user_id": "u", "items": ["i0", "i1", "i2"]}) + "\n")
    assert main([str(root)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_interactions"] == 3 and set(out["baselines"]) == {"popularity", "transitions"}
    (root / "sequences.jsonl").write_text(json.dumps({"user_id": "u", "items": ["i0", "nope"]}) + "\n")
    assert main([str(root)]) == 2
