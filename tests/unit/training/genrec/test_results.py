"""The generative results rows: one per (dataset, model), a rerun replaces its own rows only."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from tests.unit.training.genrec.splits import TINY
from training.genrec.results import model_name, prior_alone_fields, write_rows


def test_rows_are_replaced_by_dataset_and_model_and_the_others_kept(tmp_path: Path) -> None:
    path = tmp_path / "results" / "generative.json"
    write_rows(
        path, [{"dataset": "A", "model": "m", "recall@10": 0.1}, {"dataset": "B", "model": "m", "recall@10": 0.2}]
    )
    write_rows(
        path, [{"dataset": "A", "model": "m", "recall@10": 0.3}, {"dataset": "A", "model": "n", "recall@10": 0.4}]
    )
    rows = json.loads(path.read_text())
    assert [(r["dataset"], r["model"], r["recall@10"]) for r in rows] == [
        ("B", "m", 0.2),
        ("A", "m", 0.3),
        ("A", "n", 0.4),
    ]


def test_model_names_tell_runs_apart() -> None:
    plain = model_name(TINY)
    assert plain == "genrec T5 d32 ff64 2+2L, batch 32, lr 0.01, beam 10"
    names = {
        model_name(replace(TINY, history_input="items")),
        model_name(replace(TINY, history_input="items", item_id_input=True)),
        model_name(replace(TINY, history_input="items", item_id_input=True, item_id_init="vectors")),
        model_name(replace(TINY, lr_schedule="inverse_sqrt", warmup_steps=10)),
        model_name(replace(TINY, lr_schedule="cosine", warmup_steps=10)),
        plain,
    }
    assert len(names) == 6
    assert model_name(replace(TINY, lr_schedule="inverse_sqrt", warmup_steps=10)).endswith(
        "lr 0.01 inverse_sqrt (warmup 10), beam 10"
    )


def test_prior_alone_fields_round_full_ranking_and_in_beam_metrics() -> None:
    metrics = {
        "prior_alone_test": {"recall@10": 0.123456, "ndcg@10": 0.05555},
        "prior_beam_test": {"recall@10": 0.1, "ndcg@10": 0.04},
    }
    assert prior_alone_fields(metrics) == {
        "prior_alone_recall@10": 0.1235,
        "prior_alone_ndcg@10": 0.0556,
        "prior_beam_recall@10": 0.1,
        "prior_beam_ndcg@10": 0.04,
    }
