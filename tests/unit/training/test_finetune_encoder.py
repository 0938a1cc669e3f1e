"""Encoder fine-tuning job and held-out evaluation on a tiny random BERT and a generated catalog."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import training.encoder.finetune as ft
import training.encoder.finetune_data as fd
from training.config import EncoderFinetuneConfig
from training.data.loader import load_dataset
from training.encoder.heldout import (
    ItemSplit,
    evaluate_heldout,
    retrieval_metrics,
    split_items,
)
from training.models.text_encoder import TextEncoder, load_tokenizer

COLORS = ["red", "blue", "green", "black", "white", "steel", "brass", "copper"]
THINGS = ["valve", "bolt", "glove", "drill", "tape", "hose", "clamp", "wrench", "gauge", "fuse"]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("catalog")
    rows = []
    for i in range(60):
        c, t = COLORS[i % len(COLORS)], THINGS[(i * 7) % len(THINGS)]
        row: dict[str, Any] = {"item_id": f"i{i}", "title": f"{c} {t} model {i}", "brand": f"brand{i % 5}"}
        if i % 10 != 9:  # every tenth item has no description
            row["description"] = f"A {t} made of {c} material, size {i % 4}, for industrial use."
        rows.append(row)
    (root / "items.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def _cfg(model_dir: Path, **kw: Any) -> EncoderFinetuneConfig:
    base: dict[str, Any] = {
        "base_model_dir": str(model_dir),
        "batch_size": 8,
        "chunk_size": 3,
        "epochs": 2,
        "lr": 1e-3,
        "doc_max_length": 32,
        "query_max_length": 16,
        "val_distractors": 10,
        "threads": 1,  # tiny matrices: more threads only add contention
        "patience": 5,
    }
    base.update(kw)
    return EncoderFinetuneConfig(**base)


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in TextEncoder.from_pretrained(model_dir).state_dict().items()}


def test_split_is_seeded_stable_and_partitions() -> None:
    ids = [f"x{i}" for i in range(2000)]
    s = split_items(ids, 0.7, 0.1, seed=3)
    assert sorted(s.train + s.val + s.test) == sorted(ids)
    assert abs(len(s.train) / 2000 - 0.7) < 0.05 and abs(len(s.val) / 2000 - 0.1) < 0.03
    # an item's side does not depend on the rest of the catalog
    sub = split_items(ids[::3], 0.7, 0.1, seed=3)
    assert set(sub.train) == set(s.train) & set(ids[::3])
    assert split_items(ids, 0.7, 0.1, seed=4).train != s.train
    with pytest.raises(ValueError, match="train_fraction"):
        split_items(ids, 0.9, 0.2, seed=0)


def test_retrieval_metrics_ranks() -> None:
    docs = np.eye(4, dtype=np.float32)  # [4, 4]
    queries = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0.9, 0.1, 0]], dtype=np.float32)
    m = retrieval_metrics(queries, docs, np.array([0, 1, 2]))  # third query ranks its doc 2nd
    assert m["recall@10"] == 1.0
    assert m["mrr"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 1 + 1 / np.log2(3)) / 3)


def test_title_stems_match_scientific_style_titles() -> None:
    stems = fd.title_stems("Gorilla Glue, 8 oz, Brown. Tapes & Adhesives. Gorilla.")
    assert "gorilla glue, 8 oz, brown" in stems
    assert "gorilla glue" not in stems


def test_finetune_runs_saves_and_is_deterministic(tiny_encoder_dir: Path, catalog: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_encoder_dir, freeze_layers=1)
    a = ft.finetune_encoder(catalog, tmp_path / "a", cfg)
    ft.finetune_encoder(catalog, tmp_path / "b", cfg)
    assert a["n_without_description"] == 6
    assert a["n_train_pairs"] + a["n_val_pairs"] < 54  # test items never trained on
    split = ItemSplit.load(tmp_path / "a" / "split.json")
    assert split.train and split.val and split.test
    info = json.loads((tmp_path / "a" / ft.INFO_FILE).read_text())
    assert [h["epoch"] for h in info["history"]] == [0, 1, 2]
    assert info["steps"] == 2 * info["steps_per_epoch"] and info["train_seconds"] > 0
    wa, wb = _weights(tmp_path / "a" / "model"), _weights(tmp_path / "b" / "model")
    for k, v in wa.items():
        torch.testing.assert_close(wb[k], v, msg=k)
    # frozen bottom untouched, top layer trained (when the best epoch is not the base one)
    base = _weights(tiny_encoder_dir)
    torch.testing.assert_close(
        wa["backbone.encoder.layer.0.output.dense.weight"], base["backbone.encoder.layer.0.output.dense.weight"]
    )
    if info["best_epoch"] > 0:
        assert not torch.equal(
            wa["backbone.encoder.layer.1.output.dense.weight"], base["backbone.encoder.layer.1.output.dense.weight"]
        )


def test_interrupted_run_resumes_to_the_same_weights(
    tiny_encoder_dir: Path, catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg(tiny_encoder_dir, freeze_layers=0, patience=10, epochs=3)
    ft.finetune_encoder(catalog, tmp_path / "full", cfg)
    steps_per_epoch = json.loads((tmp_path / "full" / ft.INFO_FILE).read_text())["steps_per_epoch"]

    real = ft.gradcache_backward
    calls = {"n": 0}

    def crash_in_epoch_2(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] > steps_per_epoch:
            raise KeyboardInterrupt("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(ft, "gradcache_backward", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        ft.finetune_encoder(catalog, tmp_path / "resumed", cfg)
    monkeypatch.setattr(ft, "gradcache_backward", real)
    ft.finetune_encoder(catalog, tmp_path / "resumed", cfg)
    info = json.loads((tmp_path / "resumed" / ft.INFO_FILE).read_text())
    assert [h["epoch"] for h in info["history"]] == [0, 1, 2, 3]
    wf, wr = _weights(tmp_path / "full" / "model"), _weights(tmp_path / "resumed" / "model")
    for k, v in wf.items():
        torch.testing.assert_close(wr[k], v, msg=k)


def test_heldout_eval_pools_and_cache(tiny_encoder_dir: Path, catalog: Path, tmp_path: Path) -> None:
    ds = load_dataset(catalog, require_sequences=False)
    split = split_items(ds.item_ids, 0.7, 0.1, seed=0)
    first = evaluate_heldout(ds.items, split, tiny_encoder_dir, max_length=32, cache_dir=tmp_path / "cache")
    assert [r.pool for r in first] == ["catalog", "test"]
    assert first[0].n_candidates == 54 and first[1].n_candidates == first[1].n_test_items
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    again = evaluate_heldout(ds.items, split, tiny_encoder_dir, max_length=32, cache_dir=tmp_path / "cache")
    assert [r.metrics for r in again] == [r.metrics for r in first]
    # a smaller pool can only rank the target higher
    assert first[1].metrics["mrr"] >= first[0].metrics["mrr"]


def test_rejects_bad_config(tiny_encoder_dir: Path, catalog: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        ft.finetune_encoder(catalog, tmp_path / "x", _cfg(tiny_encoder_dir, batch_size=1))
    with pytest.raises(ValueError, match="freeze_layers"):
        ft.finetune_encoder(catalog, tmp_path / "y", _cfg(tiny_encoder_dir, freeze_layers=2))


def test_downstream_rows_per_encoder_and_seq_model(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    from training.config import DemoConfig, SeqRecConfig
    from training.data.demo import generate_demo
    from training.encoder.downstream import encoder_downstream

    data = generate_demo(tmp_path / "demo", DemoConfig(n_items=40, n_users=60, min_len=4, max_len=8, seed=0))
    seq = SeqRecConfig(hidden=16, n_layers=1, n_heads=1, max_len=8, epochs=1, batch_size=32)
    rows = encoder_downstream(
        data,
        {"base": tiny_encoder_dir, "other": tiny_encoder_dir},
        seq_cfg=seq,
        max_length=32,
        cache_dir=tmp_path / "cache",
        results_dir=tmp_path / "results",
    )
    assert [(r["encoder"], r["seq_model"]) for r in rows] == [
        ("base", "id+text"),
        ("base", "text"),
        ("other", "id+text"),
        ("other", "text"),
    ]
    assert all(0.0 <= r["recall@10"] <= 1.0 and r["ndcg@10"] <= r["recall@10"] for r in rows)
    assert rows[0]["seeds"] == [0] and rows[0]["recall@10_std"] == 0.0
    saved = json.loads((tmp_path / "results" / "encoder_downstream.json").read_text())
    assert len(saved) == 4
    assert rows[0]["encoder_objective"] == "unknown" and rows[0]["seq_minutes"] == seq.max_minutes  # no train_info
    moe = encoder_downstream(
        data,
        {"base": tiny_encoder_dir},
        seq_models=["text_moe"],
        seq_cfg=seq,
        max_length=32,
        cache_dir=tmp_path / "cache",
        write=False,
    )
    assert moe[0]["seq_model"] == "text_moe" and 0.0 <= moe[0]["ndcg@10"] <= moe[0]["recall@10"] <= 1.0
    # hidden items: the row says so and adds the cold / warm split of Recall@10
    cold = encoder_downstream(
        data,
        {"base": tiny_encoder_dir},
        seq_models=["id+text"],
        seq_cfg=seq,
        max_length=32,
        cache_dir=tmp_path / "cache",
        results_dir=tmp_path / "results",
        cold_frac=0.2,
    )
    assert cold[0]["seq_model"] == "id+text, 20% cold" and cold[0]["cold_frac"] == 0.2
    assert 0.0 <= cold[0]["cold_recall@10"] <= 1.0 and 0.0 <= cold[0]["warm_recall@10"] <= 1.0
    saved = json.loads((tmp_path / "results" / "encoder_downstream.json").read_text())
    assert len(saved) == 5  # a row beside the plain id+text one, not over it
    with pytest.raises(ValueError, match="unknown seq model"):
        encoder_downstream(data, {"base": tiny_encoder_dir}, seq_models=["nope"], write=False)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_bottom_then_top_equals_full_forward(tiny_encoder_dir: Path, k: int) -> None:
    model = TextEncoder.from_pretrained(tiny_encoder_dir)
    tok = load_tokenizer(tiny_encoder_dir)
    enc = tok(["red valve", "a much longer text about a steel clamp for pipes"], padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    with torch.no_grad():
        full = model(ids, mask)  # [2, H]
        split = model.forward_from(model.bottom(ids, mask, k), mask, k)  # [2, H]
    torch.testing.assert_close(split, full, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="n_layers"):
        model.bottom(ids, mask, 3)


def test_results_command_writes_rows_plot_and_section(tiny_encoder_dir: Path, catalog: Path, tmp_path: Path) -> None:
    from training.jobs.eval_encoder import write_encoder_results

    run = tmp_path / "run"
    ft.finetune_encoder(catalog, run, _cfg(tiny_encoder_dir, freeze_layers=1, epochs=1))
    # the "base" of this test is the tiny model too: point the base model at it
    cfg_base = json.loads((run / ft.INFO_FILE).read_text())["config"]["base_model_dir"]
    assert cfg_base == str(tiny_encoder_dir)
    results, doc = tmp_path / "results", tmp_path / "RESULTS.md"
    (results).mkdir()
    other = {"dataset": "Other", "model": "base", "pool": "catalog", "recall@10": 0.5, "ndcg@10": 0.25, "mrr": 0.2}
    other |= {"n_test_items": 3, "n_candidates": 9, "train_seconds": 0.0}
    (results / "encoder.json").write_text(json.dumps([other]))
    rows = write_encoder_results(
        catalog,
        run,
        max_length=32,
        results_dir=results,
        results_doc=doc,
        cache_dir=tmp_path / "cache",
        base_model_dir=tiny_encoder_dir,
    )
    assert [(r["model"], r["pool"]) for r in rows] == [
        ("base", "catalog"),
        ("base", "test"),
        ("finetuned", "catalog"),
        ("finetuned", "test"),
    ]
    assert set(rows[0]) == {
        "dataset",
        "model",
        "pool",
        "recall@10",
        "ndcg@10",
        "mrr",
        "n_test_items",
        "n_candidates",
        "train_seconds",
    }
    saved = json.loads((results / "encoder.json").read_text())
    assert len(saved) == 5 and saved[0]["dataset"] == "Other"  # other datasets' rows survive
    assert (results / "encoder.png").stat().st_size > 1000
    text = doc.read_text()
    assert "<!-- BEGIN encoder -->" in text and "| catalog | finetuned |" not in text
    assert f"| {rows[2]['dataset']} | finetuned | catalog | {rows[2]['recall@10']:.4f} |" in text
    # Another dataset's fine-tuning write-up in the folder is never replaced (nor its plot, nor the page).
    (results / "encoder_run.json").write_text(json.dumps({"dataset": "Other", "history": []}))
    with pytest.raises(ValueError, match="holds the Other encoder write-up"):
        write_encoder_results(catalog, run, results_dir=results, results_doc=doc, base_model_dir=tiny_encoder_dir)
    assert doc.read_text() == text


def test_cli_encoder_dir_maps_to_export_and_embed_model(tmp_path: Path) -> None:
    from training.cli import make_parser
    from training.cli.build import build_overrides as _build_overrides
    from training.cli.common import results_dir as _results_dir
    from training.cli.common import results_page as _results_page
    from training.cli.encoder import encoder_config as _encoder_config
    from training.config import BuildConfig, load_config

    p = make_parser()
    args = p.parse_args(["build", "--data", str(tmp_path), "--encoder-dir", str(tmp_path / "model")])
    cfg = load_config(BuildConfig, None, _build_overrides(args))
    assert cfg.export.model_dir == str(tmp_path / "model")  # build embeds with export.model_dir too
    plain = load_config(BuildConfig, None, _build_overrides(p.parse_args(["build", "--data", str(tmp_path)])))
    assert plain.export.model_dir is None
    ft_args = p.parse_args(["finetune-encoder", "--data", "d", "--batch-size", "512", "--threads", "2"])
    enc = _encoder_config(ft_args)
    assert (enc.batch_size, enc.threads, enc.grad_cache) == (512, 2, True)
    beh = _encoder_config(p.parse_args(["finetune-encoder", "--data", "d", "--objective", "behaviour"]))
    assert beh.objective == "behaviour" and beh.max_pairs_per_epoch == 0
    with pytest.raises(SystemExit):
        p.parse_args(["finetune-encoder", "--data", "d", "--objective", "clicks"])
    col = p.parse_args(["encoder-collisions", "--data", "d", "--encoder", "ft=m", "--seeds", "0,1"])
    assert (col.encoder, col.seeds) == (["ft=m"], "0,1")
    # Results go to var/results unless asked; only --update-docs touches docs/ (and then its page).
    assert (_results_dir(col), _results_page(col)) == (Path("var/results"), None)
    docs = p.parse_args(["encoder-collisions", "--data", "d", "--update-docs"])
    assert (_results_dir(docs), _results_page(docs)) == (Path("docs/results"), Path("docs/RESULTS.md"))
    mine = p.parse_args(["encoder-results", "--data", "d", "--run", "r", "--out", str(tmp_path)])
    assert (_results_dir(mine), _results_page(mine)) == (tmp_path, None)
    with pytest.raises(SystemExit, match="--update-docs"):
        _results_dir(p.parse_args(["encoder-results", "--data", "d", "--run", "r", "--out", "x", "--update-docs"]))
    down = p.parse_args(["encoder-downstream", "--data", "d", "--seq-models", "text_moe", "--seq-epochs", "2"])
    assert (down.seq_models, down.seq_epochs, down.no_base) == ("text_moe", 2, False)


# ---------------------------------------------------------------- behaviour-aligned objective


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.config import DemoConfig
    from training.data.demo import generate_demo

    return generate_demo(
        tmp_path_factory.mktemp("demo"), DemoConfig(n_items=40, n_users=80, min_len=4, max_len=8, seed=0)
    )


def test_next_item_metrics_skips_the_query_item() -> None:
    from training.data.split import EvalCase

    vecs = np.eye(3, dtype=np.float32)
    vecs[2] = [0.8, 0.6, 0.0]  # item 2 is close to item 0
    cases = [EvalCase(0, (5, 0), 2), EvalCase(1, (1,), 1)]  # second: a repeat (target = query item)
    m = ft.next_item_metrics(vecs, cases)
    assert m["mrr"] == 1.0 and m["recall@10"] == 1.0  # item 0 itself is not a candidate for the first case
    with pytest.raises(ValueError, match="no validation"):
        ft.next_item_metrics(vecs, [])


def test_epoch_batches_never_mix_sources_or_repeat_items(tiny_encoder_dir: Path) -> None:
    model = TextEncoder.from_pretrained(tiny_encoder_dir)
    tok = load_tokenizer(tiny_encoder_dir)
    texts = [f"{COLORS[i % 8]} {THINGS[i % 10]}" for i in range(12)]
    view = fd.TextView(model, tok, texts, max_length=16, bottom_layers=0, device=torch.device("cpu"))
    pairs = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [5, 6], [7, 8], [9, 10], [10, 11]], dtype=np.int64)
    ident = np.repeat(np.arange(12, dtype=np.int64)[:, None], 2, axis=1)
    sources = [
        fd.PairSource("metadata", view, view, ident, 0, item_disjoint=False),
        fd.PairSource("behaviour", view, view, pairs, 6, item_disjoint=True),
    ]
    batches = fd.make_epoch_batches(sources, 4, seed=0, epoch=1)
    again = fd.make_epoch_batches(sources, 4, seed=0, epoch=1)  # deterministic per epoch (resume)
    assert [(b.source, b.rows.tolist()) for b in batches] == [(b.source, b.rows.tolist()) for b in again]
    assert {b.source for b in batches} == {0, 1}
    behaviour_rows = np.concatenate([b.rows for b in batches if b.source == 1])
    assert len(behaviour_rows) <= 6  # capped per epoch
    for b in batches:
        items = sources[b.source].pairs[b.rows].reshape(-1)
        if b.source == 1:
            assert len(set(items.tolist())) == len(items)


def test_behaviour_objective_trains_on_training_transitions(
    tiny_encoder_dir: Path, demo_data: Path, tmp_path: Path
) -> None:
    cfg = _cfg(tiny_encoder_dir, objective="behaviour", freeze_layers=1, epochs=2, max_pairs_per_epoch=40)
    a = ft.finetune_encoder(demo_data, tmp_path / "a", cfg)
    assert a["objective"] == "behaviour" and a["n_train_pairs"] == 0
    assert a["n_behaviour_pairs"] > 40 and a["n_val_cases"] == 80
    info = json.loads((tmp_path / "a" / ft.INFO_FILE).read_text())
    assert [h["epoch"] for h in info["history"]] == [0, 1, 2]
    assert set(info["history"][0]["val"]) == {"recall@10", "ndcg@10", "mrr"}
    assert all(h["steps"] <= 40 // 2 for h in info["history"])  # at most cap / 2 batches of >= 2 pairs
    # deterministic, and the model folder loads
    ft.finetune_encoder(demo_data, tmp_path / "b", cfg)
    wa, wb = _weights(tmp_path / "a" / "model"), _weights(tmp_path / "b" / "model")
    for k, v in wa.items():
        torch.testing.assert_close(wb[k], v, msg=k)


def test_mixed_objective_uses_both_sources_and_needs_descriptions(
    tiny_encoder_dir: Path, demo_data: Path, tmp_path: Path
) -> None:
    cfg = _cfg(tiny_encoder_dir, objective="mixed", freeze_layers=1, epochs=1, max_pairs_per_epoch=24)
    res = ft.finetune_encoder(demo_data, tmp_path / "m", cfg)
    assert res["n_train_pairs"] > 0 and res["n_behaviour_pairs"] > 0
    # a catalog without descriptions (Beauty-like) cannot run mixed
    bare = tmp_path / "bare"
    bare.mkdir()
    rows = [json.loads(x) for x in (demo_data / "items.jsonl").read_text().splitlines()]
    (bare / "items.jsonl").write_text(
        "".join(json.dumps({"item_id": r["item_id"], "title": r["title"]}) + "\n" for r in rows)
    )
    (bare / "sequences.jsonl").write_text((demo_data / "sequences.jsonl").read_text())
    with pytest.raises(ValueError, match="behaviour"):
        ft.finetune_encoder(bare, tmp_path / "x", cfg)
    with pytest.raises(ValueError, match="objective"):
        ft.finetune_encoder(bare, tmp_path / "y", _cfg(tiny_encoder_dir, objective="clicks"))


# ---------------------------------------------------------------- semantic-ID collisions per encoder


def test_collision_rate_counts_items_sharing_codes() -> None:
    from training.encoder.downstream import collision_rates

    codes = np.array([[1, 2, 3], [1, 2, 3], [1, 2, 4], [0, 0, 0], [1, 2, 3]])
    assert collision_rates(codes) == pytest.approx(3 / 5)
    assert collision_rates(np.arange(12).reshape(4, 3)) == 0.0
    with pytest.raises(ValueError, match="codes"):
        collision_rates(np.zeros((0, 3), dtype=np.int64))


def test_collisions_rows_and_results_section(tiny_encoder_dir: Path, demo_data: Path, tmp_path: Path) -> None:
    from training.config import SemanticIdConfig
    from training.encoder.downstream import encoder_collisions

    sid = SemanticIdConfig(n_levels=2, codebook_size=4, hidden=[16], latent_dim=8, epochs=3, batch_size=64)
    doc = tmp_path / "RESULTS.md"
    rows = encoder_collisions(
        demo_data,
        {"base": tiny_encoder_dir, "other": tiny_encoder_dir},
        sid_cfg=sid,
        seeds=[0, 1],
        max_length=32,
        cache_dir=tmp_path / "cache",
        results_dir=tmp_path / "results",
        results_doc=doc,
    )
    assert [r["encoder"] for r in rows] == ["base", "other"]
    for r in rows:
        # 40 items in 4 x 4 = 16 code tuples: some items must share codes, balancing cannot add collisions
        assert 0.0 < r["collision_rate"] <= 1.0
        assert r["collision_rate_balanced"] <= r["collision_rate"] + 1e-9
        assert r["seeds"] == [0, 1] and len(r["codebook_usage"]) == 2
    assert rows[0]["collision_rate"] == rows[1]["collision_rate"]  # same encoder, same seeds: same codes
    saved = json.loads((tmp_path / "results" / "encoder_collisions.json").read_text())
    assert len(saved) == 2
    text = doc.read_text()
    assert "### Semantic-ID collisions per encoder" in text
    assert f"| {rows[0]['dataset']} | base | 40 | 2 x 4 | {rows[0]['collision_rate']:.4f} ±" in text


def test_render_downstream_compares_each_encoder_with_base() -> None:
    from training.reports.encoder import render_markdown

    def row(enc: str, ndcg: float) -> dict[str, Any]:
        return {"dataset": "B", "encoder": enc, "seq_model": "text_moe", "recall@10": 2 * ndcg, "ndcg@10": ndcg}

    md = render_markdown([], [row("base", 0.01), row("behaviour", 0.005), row("meta", 0.012)], {}, [])
    assert "No held-out evaluation written yet" in md and "None" not in md
    assert "B `text_moe`: behaviour not above base (NDCG@10 0.0050 vs 0.0100, -50%)" in md
    assert "B `text_moe`: meta above base (NDCG@10 0.0120 vs 0.0100, +20%)" in md
