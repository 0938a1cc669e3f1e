"""`recsvc-train bench-genrec` (training/jobs/train_genrec.py) on a dataset folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.unit.training.genrec.splits import write_cyclic_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The cyclic bench-genrec workspace under ``tmp_path`` (the working directory from here on: the
    command writes docs/results/generative.json and docs/RESULTS.md there). -> the common arguments"""
    common = write_cyclic_dataset(tmp_path, n_items=30, n_users=40)
    monkeypatch.chdir(tmp_path)
    return common


@pytest.mark.slow
def test_bench_genrec_command_writes_a_row_per_encoder_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """recsvc-train bench-genrec on a dataset folder (text vectors given) adds its row and the page section."""
    from training.cli import main

    common = tiny_bench(tmp_path, monkeypatch)
    for mode in ("tokens", "items"):
        assert main([*common, "--history-input", mode, "--threads", "1"]) == 0
    rows = json.loads((tmp_path / "docs/results/generative.json").read_text())
    assert [r["model"].endswith("one encoder position per item") for r in rows] == [False, True]
    assert all(r["dataset"] == "cyc" and r["epochs"] == 2 and 0 <= r["recall@10"] <= 1 for r in rows)
    page = (tmp_path / "docs/RESULTS.md").read_text()
    assert "| cyc | genrec T5 d32 ff64 2+2L, batch 32, lr 0.002, beam 10, one encoder position per item |" in page
    # The same run decoded with the item -> next prior: a second row, the plain one kept.
    prior_args = ["--history-input", "items", "--threads", "1", "--prior-weights", "0.5,2"]
    assert main([*common, *prior_args]) == 0
    rows = json.loads((tmp_path / "docs/results/generative.json").read_text())
    assert len(rows) == 3 and rows[-1]["prior_weight"] in (0.5, 2.0)
    assert rows[-1]["model"] == rows[1]["model"] + f", + item→next prior (weight {rows[-1]['prior_weight']:g})"
    # Counting what is known at test time: its own row, marked ‡.
    assert main([*common, *prior_args, "--prior-counts", "histories"]) == 0
    rows = json.loads((tmp_path / "docs/results/generative.json").read_text())
    assert len(rows) == 4 and rows[-1]["model"].endswith(" ‡") and rows[-1]["prior_counts"] == "histories"
    assert 0 <= rows[-1]["prior_alone_recall@10"] <= 1 and 0 <= rows[-1]["prior_beam_recall@10"] <= 1
    page = (tmp_path / "docs/RESULTS.md").read_text()
    line = next(x for x in page.splitlines() if rows[-1]["model"] in x)
    r = rows[-1]
    want = f"| {r['prior_alone_recall@10']:.4f} / {r['prior_alone_ndcg@10']:.4f}; in the beam"
    assert f"{want} {r['prior_beam_recall@10']:.4f} / {r['prior_beam_ndcg@10']:.4f} |" in line
    # Item IDs started from the coded vectors, cosine schedule: its own row.
    init_args = ["--history-input", "items", "--item-id-input", "--item-id-init", "vectors"]
    assert main([*common, *init_args, "--lr-schedule", "cosine", "--threads", "1"]) == 0
    rows = json.loads((tmp_path / "docs/results/generative.json").read_text())
    assert len(rows) == 5 and "cosine to 0 over 2 epochs" in rows[-1]["model"]
    assert rows[-1]["model"].endswith("item ID input (started from the coded vectors)")
    with pytest.raises(SystemExit, match="comma-separated numbers"):
        main([*common, "--prior-weights", "0.5,x"])


@pytest.mark.slow
def test_bench_genrec_distils_from_the_dense_model_and_resumes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--distill-weight: the dense model is fitted in the work folder first (a second run resumes it, and the
    genrec run, instead of retraining), and the row says the model was distilled."""
    from training.cli import main

    common = tiny_bench(tmp_path, monkeypatch)
    args = [*common, "--threads", "1", "--hybrid-dense-minutes", "0.1"]
    args += ["--distill-weight", "0.5", "--distill-top", "10", "--distill-temperature", "2"]
    assert main(args) == 0
    rows = json.loads((tmp_path / "docs/results/generative.json").read_text())
    assert len(rows) == 1 and rows[0]["model"].endswith(", distilled from the dense model (λ 0.5, top 10, T 2)")
    assert rows[0]["distill_weight"] == 0.5 and rows[0]["distill_top"] == 10 and rows[0]["distill_temperature"] == 2
    assert 0 <= rows[0]["distill_teacher_val_ndcg@10"] <= 1 and rows[0]["epochs"] == 2
    assert rows[0]["model"] in (tmp_path / "docs/RESULTS.md").read_text()
    dense, genrec = tmp_path / "work/seqrec-checkpoints/last.pt", tmp_path / "work/checkpoints/last.pt"
    stamps = (dense.stat().st_mtime_ns, genrec.stat().st_mtime_ns)
    assert main(args) == 0  # the same teacher again (resumed, not refitted): the genrec run resumes as finished
    assert (dense.stat().st_mtime_ns, genrec.stat().st_mtime_ns) == stamps
    again = json.loads((tmp_path / "docs/results/generative.json").read_text())

    def untimed(rs: list[dict[str, object]]) -> list[dict[str, object]]:
        return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rs]

    assert untimed(again) == untimed(rows)  # the same row (wall-clock fields aside)
    with pytest.raises(ValueError, match="distill_top must be"):
        main([*args, "--distill-top", "0"])


def test_text_vectors_come_only_from_an_artifact_set_of_the_same_items(tmp_path: Path) -> None:
    from training.data.loader import load_dataset
    from training.jobs.train_genrec import item_vectors

    data = tmp_path / "data"
    data.mkdir()
    ids = ["A", "B", "C"]
    (data / "items.jsonl").write_text("".join(json.dumps({"item_id": i, "title": f"item {i}"}) + "\n" for i in ids))
    (data / "sequences.jsonl").write_text(json.dumps({"user_id": "u", "items": ["A", "B", "C"]}) + "\n")
    dataset = load_dataset(data)
    vec = tmp_path / "set" / "items"
    vec.mkdir(parents=True)
    want = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(vec / "text_vectors.npy", want)
    (vec / "item_ids.json").write_text(json.dumps(dataset.item_ids))
    np.testing.assert_array_equal(item_vectors(dataset, data, tmp_path / "set", threads=1), want)
    (vec / "item_ids.json").write_text(json.dumps(dataset.item_ids[::-1]))
    with pytest.raises(ValueError, match="item ids differ"):
        item_vectors(dataset, data, tmp_path / "set", threads=1)
