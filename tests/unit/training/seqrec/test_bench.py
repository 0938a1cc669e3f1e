from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from service.core.items import item_text
from service.core.transitions import PriorShape
from service.encoding.fake import FakeEncoder
from training.config import BenchSeqRecConfig, DemoConfig, EmbedItemsConfig, SeqRecConfig
from training.data.demo import generate_demo
from training.data.loader import load_dataset
from training.data.profiles import profile_sentences
from training.data.split import EvalCase
from training.encoder.cache import text_cache_key
from training.evaluation.protocols import shorten
from training.reports.page import read_section
from training.reports.seqrec import render, render_markdown
from training.seqrec.bench import bench, merge_runs
from training.seqrec.registry import DATASETS, model_config
from training.seqrec.results import ROW_KEYS, aggregate, merge_rows, rows_path, runs_path, runs_to_extend
from training.seqrec.runs import run_seqrec


def _run(seed: int, r10: float, seconds: float = 10.0) -> dict[str, object]:
    test = {"recall@5": r10 / 2, "recall@10": r10, "ndcg@5": r10 / 4, "ndcg@10": r10 / 3}
    return {"seed": seed, "test": test, "val": test, "train_seconds": seconds}


def test_aggregate_means_and_sample_std() -> None:
    row = aggregate("Beauty", "sasrec", [_run(0, 0.07, 100), _run(1, 0.08, 200), _run(2, 0.09, 300)])
    assert tuple(row) == ROW_KEYS  # exactly the fields
    assert row["recall@10"] == pytest.approx(0.08)
    assert row["ndcg@10"] == pytest.approx(0.08 / 3, abs=1e-5)
    assert row["std_recall@10"] == pytest.approx(0.01)
    assert row["seeds"] == [0, 1, 2] and row["train_seconds"] == 200.0
    assert row["cold_recall@10"] is None
    assert aggregate("Beauty", "sasrec", [_run(0, 0.07)])["std_recall@10"] is None  # one seed: no std


def test_merge_rows_replaces_by_dataset_and_model_and_keeps_the_rest() -> None:
    old = [
        aggregate("Beauty", "sasrec", [_run(0, 0.07)]),
        aggregate("ml-100k", "fusion", [_run(0, 0.10)]) | {"cold_recall@10": 0.05},
    ]
    new = [
        aggregate("ml-100k", "fusion", [_run(0, 0.12)]),  # no cold figure in this run
        aggregate("Beauty", "popularity", [_run(0, 0.01)]),
    ]
    merged = merge_rows(old, new)
    keys = [(r["dataset"], r["model"]) for r in merged]
    assert keys == [("Beauty", "popularity"), ("Beauty", "sasrec"), ("ml-100k", "fusion")]  # table order
    fusion = merged[-1]
    assert fusion["recall@10"] == pytest.approx(0.12) and fusion["cold_recall@10"] == 0.05


def test_render_states_the_protocol_and_lists_every_dataset() -> None:
    rows = [aggregate("Beauty", "sasrec", [_run(0, 0.0737)])]
    md = render_markdown(rows, {}, plot="results/seqrec.png")
    assert "history items not excluded" in md
    for ds in DATASETS:
        assert f"### {ds}" in md
    assert md.count("Not run yet.") == len(DATASETS) - 1
    assert "| SASRec (ID only) | 0.0369 | 0.0737 |" in md
    assert "TIGER (published)" in md and "0.0648" in md
    assert "![" in md


def test_model_config_applies_preset_then_overrides() -> None:
    base = SeqRecConfig(lr=1e-3)
    cfg = model_config(base, "sasrec", {"sasrec": {"lr": 5e-3}})
    assert (cfg.use_text, cfg.use_id, cfg.lr) == (False, True, 5e-3)
    assert base.use_text and base.lr == 1e-3  # base untouched
    assert model_config(base, "pq_codes").item_encoder == "pq"
    with pytest.raises(ValueError, match="unknown model"):
        model_config(base, "gru4rec")
    with pytest.raises(ValueError, match="unknown SeqRecConfig field"):
        model_config(base, "fusion", {"fusion": {"learning_rate": 1.0}})


def _seed_cache(cache: Path, texts: list[str], cfg: EmbedItemsConfig) -> np.ndarray:
    """Store cheap real vectors (the hashing FakeEncoder) under the key the harness will look up."""
    vectors = FakeEncoder().encode(texts).astype(np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(cache / f"{text_cache_key(texts, cfg, None)}.npy", vectors)
    return vectors


@pytest.mark.slow  # trains tiny models of every kind on generated data (~20 s)
def test_bench_end_to_end_on_demo_data(tmp_path: Path) -> None:
    data = generate_demo(tmp_path / "demo", DemoConfig(n_items=120, n_users=200, seed=2))
    ds = load_dataset(data)
    cfg = BenchSeqRecConfig(
        models=["popularity", "transitions", "sasrec", "fusion", "text_moe", "pq_codes", "fusion_profile"],
        seeds=[0, 1],
        cold_frac=0.2,
        cold_minutes=0.05,
        cold_runs=2,
        out=str(tmp_path / "out"),
        cache_dir=str(tmp_path / "cache"),
        models_dir=str(tmp_path / "models"),  # the default (var/models) is inside the checkout
        seqrec=SeqRecConfig(hidden=16, n_layers=1, max_len=10, epochs=2, max_minutes=0.1, pq_m=4, pq_k=8, pq_iters=3),
    )
    cache = tmp_path / "cache" / ds.name
    _seed_cache(cache, [item_text(it) for it in ds.items], cfg.embed)
    _seed_cache(cache, profile_sentences(ds), cfg.embed)
    rows = bench(data, cfg, progress=False)
    assert list((tmp_path / "models").rglob("seed0.pt")), "trained weights go to cfg.models_dir"
    mc = ["sasrec+mc", "fusion+mc"]  # cfg.markov_models: the same trained models plus the transition prior
    assert sorted(r["model"] for r in rows) == sorted(cfg.models + mc)
    saved = json.loads(rows_path(cfg.out).read_text())
    assert {tuple(r) for r in saved} == {ROW_KEYS}
    by_model = {r["model"]: r for r in saved}
    for baseline in ("popularity", "transitions"):
        assert by_model[baseline]["seeds"] == [0] and by_model[baseline]["cold_recall@10"] is None
    # the demo's sequences have follow-up structure, which first-order counts pick up
    assert by_model["transitions"]["recall@10"] > by_model["popularity"]["recall@10"]
    assert by_model["sasrec"]["seeds"] == [0, 1] and by_model["sasrec"]["std_recall@10"] is not None
    assert by_model["sasrec"]["cold_recall@10"] is None  # ID only: no cold figure
    for m in ("fusion", "text_moe", "pq_codes", "fusion_profile"):
        assert by_model[m]["cold_recall@10"] is not None
        assert 0.0 <= by_model[m]["cold_recall@10"] <= 1.0
    details = json.loads(runs_path(cfg.out).read_text())
    fusion_cold = details[f"{ds.name}/fusion"]["cold"]
    assert fusion_cold["n_cold_items"] == 24
    # two cold runs (other hidden items, other seed); the row shows their mean
    assert [(r["seed"], r["model_seed"]) for r in fusion_cold["runs"]] == [(0, 0), (1, 1)]
    mean = np.mean([r["cold_recall@10"] for r in fusion_cold["runs"]])
    assert by_model["fusion"]["cold_recall@10"] == pytest.approx(mean, abs=1e-5)
    # fusion scores cold items with borrowed ID rows; the same model with zero rows is kept beside it
    assert fusion_cold["cold_id"]["k"] == 1 and fusion_cold["zero_id_rows"]["cold_recall@10"] is not None
    assert "zero_id_rows" not in details[f"{ds.name}/text_moe"]["cold"]  # no ID rows to fill
    for m in mc:
        assert by_model[m]["seeds"] == [0, 1] and by_model[m]["cold_recall@10"] is None
        assert {r["markov_weight"] for r in details[f"{ds.name}/{m}"]["runs"]} <= set(cfg.markov_weights)
        # same trained weights, so the same training time as the plain row
        assert by_model[m]["train_seconds"] == by_model[m.removesuffix("+mc")]["train_seconds"]
    # The run wrote JSON only; the report renders the page (and the plot beside the JSON) from it.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["seqrec.json", "seqrec_runs.json"]
    page = tmp_path / "page" / "RESULTS.md"
    render(cfg.out, page)
    section = read_section("seqrec", page)
    assert section is not None and "Fusion + profile" in section
    # a short label in the table, the picked weight under Details
    assert "| Fusion (ID + W·text) + item→next prior |" in section
    assert "· Fusion (ID + W·text) + item→next prior: Fusion (ID + W·text) + item→next prior; prior weight" in section
    assert (tmp_path / "out" / "seqrec.png").is_file() and "](../out/seqrec.png)" in section
    page.unlink()
    render(cfg.out, page)
    assert read_section("seqrec", page) == section
    # --cold-only: a new cold run updates the cold figure and keeps the main numbers.
    cfg.models, cfg.cold_seed = ["fusion"], 1
    bench(data, cfg, cold_only=True, progress=False)
    fusion = next(r for r in json.loads(rows_path(cfg.out).read_text()) if r["model"] == "fusion")
    assert {k: fusion[k] for k in ROW_KEYS if k != "cold_recall@10"} == {
        k: by_model["fusion"][k] for k in ROW_KEYS if k != "cold_recall@10"
    }
    assert json.loads(runs_path(cfg.out).read_text())[f"{ds.name}/fusion"]["cold"]["seed"] == 1
    # A later main run without a cold run keeps the cold figure and the details of the run behind it.
    bench(data, replace(cfg, cold_frac=0.0, seeds=[0]), progress=False)
    fusion = next(r for r in json.loads(rows_path(cfg.out).read_text()) if r["model"] == "fusion")
    assert fusion["seeds"] == [0] and fusion["cold_recall@10"] is not None
    assert json.loads(runs_path(cfg.out).read_text())[f"{ds.name}/fusion"]["cold"]["seed"] == 1
    with pytest.raises(ValueError, match="no row"):
        cfg.models = ["text_moe"]
        bench(data, replace(cfg, out=str(tmp_path / "empty")), cold_only=True, progress=False)


@pytest.mark.slow  # trains five tiny ID-only models and re-scores three (~15 s)
def test_extend_trains_only_missing_seeds_and_keeps_stored_runs(tmp_path: Path) -> None:
    data = generate_demo(tmp_path / "demo", DemoConfig(n_items=60, n_users=100, seed=3))
    name = load_dataset(data).name
    cfg = BenchSeqRecConfig(
        models=["sasrec"],
        seeds=[0],
        out=str(tmp_path / "out"),
        cache_dir=str(tmp_path / "cache"),
        models_dir=str(tmp_path / "models"),
        seqrec=SeqRecConfig(hidden=16, n_layers=1, max_len=10, epochs=1),
    )
    bench(data, cfg, progress=False)
    assert (tmp_path / "models" / name / "sasrec" / "seed0.pt").is_file()
    details = json.loads(runs_path(cfg.out).read_text())
    first, first_mc = details[f"{name}/sasrec"]["runs"][0], details[f"{name}/sasrec+mc"]["runs"][0]
    # seeds 1 and 2 in one go: seed 0 is not trained again, its stored runs stay as they were
    rows = bench(data, replace(cfg, seeds=[0, 1, 2]), extend=True, progress=False)
    details = json.loads(runs_path(cfg.out).read_text())
    assert [r["seed"] for r in details[f"{name}/sasrec"]["runs"]] == [0, 1, 2]
    assert details[f"{name}/sasrec"]["runs"][0] == first
    assert details[f"{name}/sasrec+mc"]["runs"][0] == first_mc
    by_model = {r["model"]: r for r in rows}
    assert by_model["sasrec"]["seeds"] == by_model["sasrec+mc"]["seeds"] == [0, 1, 2]
    tests = [r["test"]["recall@10"] for r in details[f"{name}/sasrec"]["runs"]]
    assert by_model["sasrec"]["recall@10"] == pytest.approx(np.mean(tests), abs=1e-5)
    # the listed seeds only: a stored seed that is not asked for is dropped from the row
    rows = bench(data, replace(cfg, seeds=[1, 2]), extend=True, progress=False)
    assert {r["model"]: r["seeds"] for r in rows} == {"sasrec": [1, 2], "sasrec+mc": [1, 2]}
    # runs of another setup are not mixed into one mean
    with pytest.raises(ValueError, match="differs in hidden"):
        bench(data, replace(cfg, seeds=[0, 1], seqrec=replace(cfg.seqrec, hidden=8)), extend=True, progress=False)

    # --mc-only: the +mc rows again from the saved weights, here with a choice of two prior shapes
    wide = {"window": 3, "decay": 0.5, "backward": 0.5, "last": 2, "last_decay": 0.5}
    main_before = next(r for r in json.loads(rows_path(cfg.out).read_text()) if r["model"] == "sasrec")
    rows = bench(data, replace(cfg, seeds=[1, 2], markov_shapes=[{}, wide]), mc_only=True, progress=False)
    assert [(r["model"], r["seeds"]) for r in rows] == [("sasrec+mc", [1, 2])]
    details = json.loads(runs_path(cfg.out).read_text())
    mc_runs = details[f"{name}/sasrec+mc"]["runs"]
    assert all(r["markov_shape"] in ({**PriorShape().to_dict()}, {**PriorShape(**wide).to_dict()}) for r in mc_runs)
    assert [r["train_seconds"] for r in mc_runs] == [r["train_seconds"] for r in details[f"{name}/sasrec"]["runs"]]
    main_after = next(r for r in json.loads(rows_path(cfg.out).read_text()) if r["model"] == "sasrec")
    assert main_after == main_before  # the main row is not touched
    (tmp_path / "models" / name / "sasrec" / "seed2.pt").unlink()
    with pytest.raises(ValueError, match="no saved weights"):
        bench(data, replace(cfg, seeds=[1, 2]), mc_only=True, progress=False)
    with pytest.raises(ValueError, match="no stored run for seed"):
        bench(data, replace(cfg, seeds=[0, 1]), mc_only=True, progress=False)  # seed 0 left the row above


def test_transitions_baseline_with_histories_counts_scores_the_validation_transitions(tmp_path: Path) -> None:
    # A users: k r s t (train k r, validation item s); B users: m n r s (test: history m n r, target s).
    # Only A's validation item gives the r -> s transition that B's test case needs.
    data = tmp_path / "walks"
    data.mkdir()
    items = "".join(json.dumps({"item_id": i, "title": f"item {i}"}) + "\n" for i in "krstmn")
    (data / "items.jsonl").write_text(items)
    seqs = [list("krst")] * 3 + [list("mnrs")] * 3
    lines = "".join(json.dumps({"user_id": f"u{u}", "items": s}) + "\n" for u, s in enumerate(seqs))
    (data / "sequences.jsonl").write_text(lines)
    ds = load_dataset(data)
    train_only = run_seqrec(data, "transitions", None, SeqRecConfig(), 0, dataset=ds)
    known = run_seqrec(data, "transitions", None, SeqRecConfig(), 0, dataset=ds, prior_counts="histories")
    assert known["val"] == train_only["val"] and known["counts"] == "histories"
    assert known["test"]["ndcg@5"] > train_only["test"]["ndcg@5"]


def test_merge_runs_adds_another_processes_seeds(tmp_path: Path) -> None:
    cfg = BenchSeqRecConfig(
        models=["fusion"],
        out=str(tmp_path),
    )
    conf = {"hidden": 64}

    def entry(*runs: dict[str, object]) -> dict[str, object]:
        return {"runs": [{**r, "epochs": 3, "best_epoch": 2} for r in runs], "config": conf, "label": "Fusion"}

    mine = {"Beauty/fusion": entry(_run(0, 0.08)), "Beauty/fusion+mc": entry(_run(0, 0.09))}
    theirs = {"Beauty/fusion": entry(_run(2, 0.06)), "Beauty/fusion+mc": entry(_run(2, 0.07))}
    runs_path(cfg.out).write_text(json.dumps(mine))
    (tmp_path / "other.json").write_text(json.dumps(theirs))
    rows = {r["model"]: r for r in merge_runs(cfg, "Beauty", tmp_path / "other.json")}
    assert rows["fusion"]["seeds"] == rows["fusion+mc"]["seeds"] == [0, 2]
    assert rows["fusion"]["recall@10"] == pytest.approx(0.07) and rows["fusion+mc"]["recall@10"] == pytest.approx(0.08)
    saved = {r["model"]: r for r in json.loads(rows_path(cfg.out).read_text())}
    assert saved["fusion"]["seeds"] == [0, 2]
    with pytest.raises(ValueError, match="both files hold"):
        merge_runs(cfg, "Beauty", tmp_path / "other.json")  # seed 2 is now in both
    theirs["Beauty/fusion"]["config"] = {"hidden": 32}
    theirs["Beauty/fusion"]["runs"] = [_run(5, 0.1)]
    (tmp_path / "other.json").write_text(json.dumps(theirs))
    with pytest.raises(ValueError, match="another config"):
        merge_runs(cfg, "Beauty", tmp_path / "other.json")
    with pytest.raises(ValueError, match="holds none"):
        merge_runs(cfg, "Sports", tmp_path / "other.json")


def test_merge_runs_joins_cold_runs_of_several_processes(tmp_path: Path) -> None:
    """Seeds and cold runs split over processes (each `--seeds K` then `--cold-only --cold-runs 1
    --set cold_seed=K`) merge into the row one process with `--cold-runs 3` would have written."""
    cfg = BenchSeqRecConfig(models=["fusion_norm"], out=str(tmp_path))
    rule = {"neighbours": 10}

    def entry(seed: int, r10: float, cold_r10: float) -> dict[str, object]:
        cold_run = {"cold_recall@10": cold_r10, "warm_recall@10": 2 * cold_r10, "n_cold_items": 100, "model_seed": seed}
        cold = {"cold_recall@10": cold_r10, "frac": 0.1, "seed": seed, "n_cold_items": 100, "max_minutes": 10.0,
                "cold_id": rule, "runs": [cold_run]}  # fmt: skip
        return {"runs": [{**_run(seed, r10), "epochs": 3, "best_epoch": 2}], "config": {"hidden": 64}, "cold": cold}

    runs_path(cfg.out).write_text(json.dumps({"Sports/fusion_norm": entry(0, 0.05, 0.02)}))
    for seed, r10, cold_r10 in ((1, 0.04, 0.03), (2, 0.06, 0.04)):
        (tmp_path / f"p{seed}.json").write_text(json.dumps({"Sports/fusion_norm": entry(seed, r10, cold_r10)}))
        (row,) = merge_runs(cfg, "Sports", tmp_path / f"p{seed}.json")
    assert row["seeds"] == [0, 1, 2] and row["recall@10"] == pytest.approx(0.05)
    assert row["cold_recall@10"] == pytest.approx(0.03)
    cold = json.loads(runs_path(cfg.out).read_text())["Sports/fusion_norm"]["cold"]
    assert [r["cold_seed"] for r in cold["runs"]] == [0, 1, 2] and cold["warm_recall@10"] == pytest.approx(0.06)
    saved = {r["model"]: r for r in json.loads(rows_path(cfg.out).read_text())}
    assert saved["fusion_norm"]["cold_recall@10"] == pytest.approx(0.03)
    other = entry(5, 0.05, 0.05)
    other["cold"]["runs"][0]["cold_seed"] = 2  # type: ignore[index]
    (tmp_path / "dup.json").write_text(json.dumps({"Sports/fusion_norm": other}))
    with pytest.raises(ValueError, match="hidden-item seed"):
        merge_runs(cfg, "Sports", tmp_path / "dup.json")
    other = entry(6, 0.05, 0.05)
    other["cold"]["frac"] = 0.2  # type: ignore[index]
    (tmp_path / "frac.json").write_text(json.dumps({"Sports/fusion_norm": other}))
    with pytest.raises(ValueError, match="differ in frac"):
        merge_runs(cfg, "Sports", tmp_path / "frac.json")


def test_shorten_keeps_the_last_items_and_the_short_history_table_renders_from_run_details() -> None:
    cases = [EvalCase(0, (1, 2, 3, 4), 5), EvalCase(1, (7,), 8)]
    assert shorten(cases, 2) == [EvalCase(0, (3, 4), 5), EvalCase(1, (7,), 8)]
    with pytest.raises(ValueError, match=">= 1"):
        shorten(cases, 0)
    short = {"1": {"recall@10": 0.02, "ndcg@10": 0.01}, "3": {"recall@10": 0.04, "ndcg@10": 0.02}}
    extra = {"test_short": short, "epochs": 3, "best_epoch": 2}
    runs = [_run(0, 0.07) | extra, _run(1, 0.09) | extra]
    rows = [aggregate("ml-100k", "sasrec", runs), aggregate("ml-100k", "fusion", [_run(0, 0.05)])]
    details = {"ml-100k/sasrec": {"runs": runs}, "ml-100k/fusion": {"runs": [_run(0, 0.05) | {"epochs": 0}]}}
    md = render_markdown(rows, details, plot=None)
    assert "| model | seeds | last 1 item: R@10 / N@10 | last 3 items: R@10 / N@10 |" in md
    assert "| SASRec (ID only) | 2 | 0.0200 / 0.0100 | 0.0400 / 0.0200 |" in md
    assert "| Fusion (ID + W·text) | 1 |" not in md  # runs without the figure are left out
    assert "Short histories" not in render_markdown(rows, {}, plot=None)


def test_extend_counts_a_knob_added_after_the_runs_were_stored_as_its_default(tmp_path: Path) -> None:
    from dataclasses import asdict

    cfg = SeqRecConfig()
    stored = asdict(cfg)
    del stored["profile_dropout"]  # runs stored before the knob existed
    details = tmp_path / "runs.json"
    details.write_text(json.dumps({"d/sasrec": {"config": stored, "runs": [_run(0, 0.07)]}}))
    runs, _ = runs_to_extend(details, "d/sasrec", cfg, False, [0, 1])
    assert [r["seed"] for r in runs] == [0]
    with pytest.raises(ValueError, match="profile_dropout"):
        runs_to_extend(details, "d/sasrec", replace(cfg, profile_dropout=0.25), False, [0, 1])


def test_runs_stored_before_item_norm_count_as_raw_sums_whatever_the_default(tmp_path: Path) -> None:
    from dataclasses import asdict

    stored = asdict(model_config(SeqRecConfig(), "fusion"))
    del stored["item_norm"]  # runs stored before the knob existed used raw sums
    details = tmp_path / "runs.json"
    details.write_text(json.dumps({"d/fusion": {"config": stored, "runs": [_run(0, 0.07)]}}))
    for default in (0.0, 4.0):  # the fusion preset pins item_norm 0: its rows do not follow the default
        cfg = model_config(SeqRecConfig(item_norm=default), "fusion")
        assert cfg.item_norm == 0.0
        runs, _ = runs_to_extend(details, "d/fusion", cfg, False, [0, 1])
        assert [r["seed"] for r in runs] == [0]
    norm = model_config(SeqRecConfig(), "fusion_norm")
    assert (norm.use_id, norm.use_text, norm.item_norm) == (True, True, 4.0)
    with pytest.raises(ValueError, match="item_norm"):
        runs_to_extend(details, "d/fusion", norm, False, [0, 1])
