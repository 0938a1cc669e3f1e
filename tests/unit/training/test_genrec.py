"""Generative recommender: teacher-forced training, beam-search evaluation, save/load."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from service.core.sid import SidLayout, SidTable
from service.semantic_ids.decoder import history_input as history_input_of
from service.semantic_ids.decoder import item_id_embeddings, load_genrec, with_item_ids
from service.semantic_ids.prefix_index import PrefixIndex
from training.config import GenRecConfig
from training.data.split import EvalCase, Split
from training.jobs.train_genrec import (
    GenRecBatches,
    decode_top,
    evaluate_generative,
    item_id_init_rows,
    lr_at,
    model_name,
    render_section,
    train_genrec,
    training_examples,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = GenRecConfig(
    history_input="tokens",  # TIGER's layout at a constant lr (the defaults are the CPU configs' model)
    item_id_input=False,
    item_id_init="random",
    lr_schedule="constant",
    warmup_steps=0,
    d_model=32,
    d_ff=64,
    n_heads=2,
    d_kv=16,
    max_items=3,
    batch_size=32,
    epochs=40,
    max_minutes=5.0,  # epoch-bound, not time-bound: a loaded machine must not change the result
    eval_every=40,  # validate once, at the end (decoding every epoch would dominate the test)
    patience=30,
    beam=10,
    lr=1e-2,
    dropout=0.0,
    val_users=0,
    eval_batch_size=64,
)


def cyclic_split(n_items: int = 40, n_users: int = 80, seed: int = 0) -> Split:
    """Users walk the catalog in steps of +1 from a random start: next item = last + 1 (mod n)."""
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for u in range(n_users):
        start = int(rng.integers(0, n_items))
        s = [(start + i) % n_items for i in range(int(rng.integers(4, 8)))]
        train.append(s[:-2])
        val.append(EvalCase(u, tuple(s[:-2]), s[-2]))
        test.append(EvalCase(u, tuple(s[:-1]), s[-1]))
    return Split(n_items=n_items, train=train, val=val, test=test)


def table_for(n: int) -> SidTable:
    rng = np.random.default_rng(0)
    return SidTable.from_codes(rng.integers(0, 4, (n, 2)), SidLayout(2, 4, 8))


def test_training_examples_cover_every_position() -> None:
    hist, targets, seqs = training_examples([[1, 2, 3], [4], [5, 6]], max_items=1)
    assert [h.tolist() for h in hist] == [[1], [2], [5]]
    assert targets.tolist() == [2, 3, 6]
    assert seqs.tolist() == [0, 0, 2]  # each example's training sequence (user)


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["tokens", "items", "items+ids"])
def test_genrec_learns_a_deterministic_pattern_and_round_trips(tmp_path: Path, encoder: str) -> None:
    torch.manual_seed(0)
    split = cyclic_split()
    table = table_for(split.n_items)
    history_input, ids = encoder.split("+")[0], encoder.endswith("+ids")
    cfg = replace(TINY, history_input=history_input, item_id_input=ids)
    res = train_genrec(split, table, cfg, tmp_path / "genrec")
    test = res.metrics["test"]
    assert set(test) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
    # next = last + 1 is learnable: far above chance (10 of 40 items in the list)
    assert test["recall@10"] > 0.6, test
    model = load_genrec(tmp_path / "genrec")
    assert history_input_of(model) == history_input  # the saved config says how to encode histories
    index = PrefixIndex(table.sids, table.layout)
    rows = table.tokens()
    if ids:  # the ID vectors were saved and loaded; the encoder rows carry the ID column
        assert item_id_embeddings(model) == split.n_items
        rows = with_item_ids(rows, np.arange(split.n_items))
        with pytest.raises(ValueError, match="columns"):
            decode_top(model, table.tokens(), index, [[3]], cfg, k=5)
    again = evaluate_generative(model, rows, index, split.test, cfg)
    assert again == test
    top = decode_top(model, rows, index, [[3, 4, 5]], cfg, k=5)
    assert top.shape == (1, 5) and ((top >= 0) & (top < split.n_items)).all()
    assert "| cyclic |" in render_section(
        [
            {
                "dataset": "cyclic",
                "model": "m",
                "recall@10": 0.1,
                "ndcg@10": 0.05,
                "unique_prefix_share": 1.0,
                "train_seconds": 3.0,
            }
        ]
    )


def test_results_section_renders_quality_rows_and_beam_benchmark(tmp_path: Path) -> None:
    from training.jobs.train_genrec import write_generative_section

    rows = [
        {"dataset": "Beauty", "model": "m", "recall@10": 0.01, "ndcg@10": 0.005, "unique_prefix_share": 0.99}
        | {"train_seconds": 10.0}
    ]
    beam = {"device": "cpu", "threads": 1, "items": 12000, "batch": 32, "beam": 20, "batched_per_s": 60.0}
    beam |= {"reference_per_s": 15.0, "speedup": 4.0, "decode_speedup_excl_encoder": 6.0, "same_topk": True}
    (tmp_path / "g.json").write_text(json.dumps(rows))
    (tmp_path / "b.json").write_text(json.dumps(beam))
    md = tmp_path / "RESULTS.md"
    write_generative_section(tmp_path / "g.json", tmp_path / "b.json", md)
    text = md.read_text()
    assert "| Beauty | m | 0.0100 | 0.0050 | 0.9900 | - | - | 10 | cpu, - thread(s) | - | 0.0648 / 0.0384 |" in text
    assert "| cpu | 1 | tokens | 12000 | 32 x 20 | 60.0 | 15.0 | 4.0x | 6.0x | True | - |" in text
    # the stored list of runs, one per device, renders one row each; GPU quality rows name the GPU
    gpu = beam | {"device": "NVIDIA H200", "threads": 4, "speedup": 12.0}
    (tmp_path / "b.json").write_text(json.dumps([beam, gpu]))
    gpu_row = rows[0] | {"model": "g", "device": "cuda", "device_name": "H"}
    (tmp_path / "g.json").write_text(json.dumps([*rows, gpu_row]))
    write_generative_section(tmp_path / "g.json", tmp_path / "b.json", md)
    text = md.read_text()
    assert "| cpu | 1 | tokens | 12000 | 32 x 20 | 60.0 | 15.0 | 4.0x | 6.0x | True | - |" in text
    assert "| NVIDIA H200 | 4 | tokens | 12000 | 32 x 20 | 60.0 | 15.0 | 12.0x | 6.0x | True | - |" in text
    assert "| Beauty | g | 0.0100 | 0.0050 | 0.9900 | - | - | 10 | H | - | 0.0648 / 0.0384 |" in text


def test_results_section_lists_the_best_row_of_each_kind() -> None:
    base = {"dataset": "Beauty", "unique_prefix_share": 1.0, "train_seconds": 1.0}
    alone = {"prior_alone_recall@10": 0.05, "prior_alone_ndcg@10": 0.03}
    rows = [
        base | {"model": "a", "recall@10": 0.02, "ndcg@10": 0.010},
        base | {"model": "b", "recall@10": 0.01, "ndcg@10": 0.012},
        base | {"model": "b, + item→next prior (weight 8)", "recall@10": 0.06, "ndcg@10": 0.04} | alone,
        base | {"model": "c, trained with the item→next prior (weight 1)", "recall@10": 0.07, "ndcg@10": 0.03},
        base | {"model": "b, + item→next prior (weight 8) ‡", "recall@10": 0.08, "ndcg@10": 0.05} | alone,
        {**base, "dataset": "Sports", "model": "s", "recall@10": 0.02, "ndcg@10": 0.01},
    ]
    text = render_section(rows)
    assert (
        "- Beauty, best Recall@10 / NDCG@10 by NDCG@10: the generative model alone 0.0100 / 0.0120; with the"
        " prior (training counts) 0.0600 / 0.0400 (the prior alone 0.0500 / 0.0300); with the prior ‡ 0.0800 /"
        " 0.0500 (the prior alone 0.0500 / 0.0300); published TIGER 0.0648 / 0.0384." in text
    )
    assert "- Sports, best Recall@10 / NDCG@10 by NDCG@10: the generative model alone 0.0200 / 0.0100;" in text


@pytest.mark.slow
def test_bench_genrec_command_writes_a_row_per_encoder_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """recsvc-train bench-genrec on a dataset folder (text vectors given) adds its row and the page section."""
    from training.cli import main
    from training.data.loader import load_dataset

    data = tmp_path / "cyc"
    data.mkdir()
    split = cyclic_split(n_items=30, n_users=40)
    ids = [f"I{i:03d}" for i in range(split.n_items)]
    (data / "items.jsonl").write_text("".join(json.dumps({"item_id": i, "title": f"item {i}"}) + "\n" for i in ids))
    seqs = [[*c.history, c.target] for c in split.test]
    (data / "sequences.jsonl").write_text(
        "".join(json.dumps({"user_id": f"u{u}", "items": [ids[j] for j in s]}) + "\n" for u, s in enumerate(seqs))
    )
    vec = tmp_path / "vec" / "items"
    vec.mkdir(parents=True)
    (vec / "item_ids.json").write_text(json.dumps(load_dataset(data).item_ids))
    np.save(vec / "text_vectors.npy", np.random.default_rng(0).normal(size=(split.n_items, 16)).astype(np.float32))
    gen = "d_model: 32\nd_ff: 64\nn_heads: 2\nd_kv: 16\nbatch_size: 32\nbeam: 10\nlr: 0.002\n"
    # the plain model (no item IDs) at a constant lr
    gen += "item_id_input: false\nitem_id_init: random\nlr_schedule: constant\nwarmup_steps: 0\n"
    (tmp_path / "gen.yaml").write_text(gen)
    (tmp_path / "sid.yaml").write_text("codebook_size: 8\nhidden: [16]\nlatent_dim: 8\nepochs: 4\nbatch_size: 16\n")
    monkeypatch.chdir(tmp_path)  # the command writes docs/results/generative.json and docs/RESULTS.md here
    common = ["bench-genrec", "--data", str(data), "--config", "gen.yaml", "--sid-config", "sid.yaml"]
    common += ["--vectors-from", str(tmp_path / "vec"), "--work", "work", "--epochs", "2", "--val-users", "0"]
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


def test_prior_guided_decoding_adds_what_the_counts_know(tmp_path: Path) -> None:
    """A barely trained model ranks next = last + 1 poorly; the item -> next prior counted on the same
    training sequences knows it, and prior-guided decoding (weight picked on validation) scores it."""
    torch.manual_seed(0)
    split = cyclic_split()
    table = table_for(split.n_items)
    cfg = replace(TINY, epochs=1, eval_every=1, prior_weights=[0.5, 4.0])
    res = train_genrec(split, table, cfg, tmp_path / "genrec")
    plain, prior = res.metrics["test"], res.metrics["prior"]
    assert set(prior["val_ndcg@10"]) == {"0.5", "4"} and prior["weight"] in (0.5, 4.0)
    assert prior["test"]["recall@10"] > 0.9 > plain["recall@10"] + 0.3, (plain, prior)
    # the prior by itself knows next = last + 1 exactly (counted on the training sequences), in the
    # full ranking and through the beam
    assert prior["prior_alone_test"]["recall@10"] > 0.9
    assert prior["prior_beam_test"]["recall@10"] > 0.9
    with pytest.raises(ValueError, match="prior_weights must be > 0"):
        train_genrec(split, table, replace(cfg, prior_weights=[0.0]), tmp_path / "bad")
    with pytest.raises(ValueError, match="prior_counts must be one of"):
        train_genrec(split, table, replace(cfg, prior_counts="everything"), tmp_path / "bad")
    assert res.section["prior_weight"] == prior["weight"]  # what serving decodes with


def test_item_dropout_removes_ids_from_history_positions() -> None:
    split = cyclic_split()
    table = table_for(split.n_items)
    tokens = table.tokens()
    cfg = replace(TINY, history_input="items", item_id_input=True, item_dropout=0.3, batch_size=64)
    batches = GenRecBatches(
        tokens, split.train, cfg, torch.device("cpu"), history_table=with_item_ids(tokens, np.arange(split.n_items))
    )
    kept = dropped = 0
    for b in batches.epoch(1):
        assert b.input_ids.shape[2] == tokens.shape[1] + 1 and b.labels.shape[1] == tokens.shape[1]
        items = (b.input_ids[..., 0] >= 2) & (b.attention_mask > 0)  # item positions (not EOS / padding)
        col = b.input_ids[..., -1][items]
        dropped += int((col == 0).sum())
        kept += int((col > 0).sum())
    assert 0.2 < dropped / (kept + dropped) < 0.4


def test_inverse_sqrt_schedule_warms_up_then_decays() -> None:
    cfg = replace(TINY, lr=1e-3, lr_schedule="inverse_sqrt", warmup_steps=100)
    assert lr_at(0, cfg) == pytest.approx(1e-5)
    assert lr_at(49, cfg) == pytest.approx(5e-4)
    assert lr_at(99, cfg) == pytest.approx(1e-3)  # peak at the end of warmup
    assert lr_at(399, cfg) == pytest.approx(5e-4)  # sqrt(100 / 400)
    assert lr_at(10_000, replace(TINY, lr=1e-3)) == 1e-3  # constant
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_at(0, replace(TINY, lr_schedule="linear"))


def test_cosine_schedule_warms_up_then_decays_to_zero_at_the_end() -> None:
    cfg = replace(TINY, lr=1e-3, lr_schedule="cosine", warmup_steps=100)
    assert lr_at(0, cfg, 1100) == pytest.approx(1e-5)
    assert lr_at(99, cfg, 1100) == pytest.approx(1e-3)  # peak at the end of warmup
    assert lr_at(599, cfg, 1100) == pytest.approx(5e-4)  # half way through the decay: cos(pi / 2)
    assert lr_at(1099, cfg, 1100) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(5000, cfg, 1100) == pytest.approx(0.0, abs=1e-12)  # past the end it stays at 0
    lrs = [lr_at(s, cfg, 1100) for s in range(99, 1100)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))
    with pytest.raises(ValueError, match="total steps"):
        lr_at(200, cfg)


def test_cosine_training_ends_at_zero_lr(tmp_path: Path) -> None:
    split = cyclic_split()
    cfg = replace(TINY, epochs=2, eval_every=1, lr=1e-3, lr_schedule="cosine", warmup_steps=2)
    res = train_genrec(split, table_for(split.n_items), cfg, tmp_path / "genrec")
    assert res.fit.epochs == 2 and res.fit.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert "cosine to 0 over 2 epochs (warmup 2)" in model_name(cfg)


def test_item_id_init_rows_keep_the_vectors_geometry() -> None:
    rng = np.random.default_rng(0)
    low_rank = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 40))  # 5 directions of 40 dims
    rows = item_id_init_rows(low_rank + 3.0, dim=8, std=1.0)
    assert rows.shape == (200, 8) and rows.dtype == np.float32
    assert rows.std() == pytest.approx(1.0, rel=1e-5)
    assert np.abs(rows[:, 5:]).max() < 1e-4  # nothing beyond the data's 5 directions
    # Distances are those of the centred vectors, up to the one scale: neighbours stay neighbours.
    d_in = np.linalg.norm(low_rank[:, None] - low_rank[None], axis=-1)
    d_out = np.linalg.norm(rows[:, None].astype(np.float64) - rows[None], axis=-1)
    ratio = d_out[d_in > 0] / d_in[d_in > 0]
    assert ratio.max() == pytest.approx(ratio.min(), rel=1e-4)
    few = item_id_init_rows(rng.normal(size=(50, 3)), dim=8, std=0.5)  # fewer features than dims
    assert few.shape == (50, 8) and np.abs(few[:, 3:]).max() == 0 and few.std() == pytest.approx(0.5, rel=1e-5)
    with pytest.raises(ValueError, match="NaN"):
        item_id_init_rows(np.full((4, 3), np.nan), dim=2, std=1.0)


def test_item_ids_start_from_the_vectors_and_are_checked(tmp_path: Path) -> None:
    split = cyclic_split()
    table = table_for(split.n_items)
    vectors = np.random.default_rng(1).normal(size=(split.n_items, 12)).astype(np.float32)
    cfg = replace(TINY, epochs=1, history_input="items", item_id_input=True, item_id_init="vectors", lr=1e-9)
    train_genrec(split, table, cfg, tmp_path / "genrec", item_vectors=vectors)
    model = load_genrec(tmp_path / "genrec")
    got = model.item_id_embedding.weight.detach().numpy()
    want = item_id_init_rows(vectors, cfg.d_model, float(model.config.initializer_factor))
    np.testing.assert_allclose(got[1:], want, atol=1e-4)  # lr ~0: still the start
    assert not got[0].any()  # row 0: no ID
    assert "item ID input (started from the coded vectors)" in model_name(cfg)
    with pytest.raises(ValueError, match="one item vector per sid table row"):
        train_genrec(split, table, cfg, tmp_path / "g2", item_vectors=vectors[:-1])
    with pytest.raises(ValueError, match="needs item_id_input"):
        train_genrec(split, table, replace(cfg, item_id_input=False), tmp_path / "g3", item_vectors=vectors)
    with pytest.raises(ValueError, match="item_id_init must be one of"):
        train_genrec(split, table, replace(cfg, item_id_init="pca"), tmp_path / "g4", item_vectors=vectors)


def test_training_follows_the_schedule(tmp_path: Path) -> None:
    split = cyclic_split()
    cfg = replace(TINY, epochs=2, eval_every=1, lr=1e-3, lr_schedule="inverse_sqrt", warmup_steps=1000)
    res = train_genrec(split, table_for(split.n_items), cfg, tmp_path / "genrec")
    steps = 0
    for h in res.fit.history:  # the lr in force at the end of each epoch: that of its last step
        steps += h["steps"]
        assert h["lr"] == pytest.approx(lr_at(steps - 1, cfg))
    assert steps > 0 and res.fit.history[-1]["lr"] < cfg.lr  # still warming up
