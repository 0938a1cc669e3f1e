"""The results page's summary: one row per family from the JSON results, ‡ rows kept apart, short labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from training.reports import render_page
from training.reports.labels import MAX_LABEL, genrec_short
from training.reports.page import SECTION_ORDER, read_section
from training.reports.seqrec import DAGGER_TITLE
from training.reports.summary import GEN_PRIOR, cold_of, omitted_line


def _row(ds: str, model: str, r10: float, n10: float, seeds: int = 3, cold: float | None = None) -> dict[str, Any]:
    return {
        "dataset": ds,
        "model": model,
        "recall@5": round(r10 * 0.6, 5),
        "recall@10": r10,
        "ndcg@5": round(n10 * 0.8, 5),
        "ndcg@10": n10,
        "std_recall@10": 0.0011 if seeds > 1 else None,
        "seeds": list(range(seeds)),
        "train_seconds": 120.0 if seeds > 1 else 0.1,
        "cold_recall@10": cold,
    }


def _runs(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"seed": s, "epochs": 5, "best_epoch": 4, **extra} for s in range(n)]


CONFIG = {"hidden": 64, "n_layers": 2, "lr": 0.003, "batch_size": 128, "max_len": 50, "max_minutes": 10.0}


def _cold(cold: float, warm: float) -> dict[str, Any]:
    return {"cold_recall@10": cold, "warm_recall@10": warm, "n_cold_items": 120, "runs": [{}, {}, {}]}


def _results(tmp_path: Path) -> Path:
    """A results folder: Beauty with every kind of row (‡ ones among them), Scientific with two families."""
    rows = [
        _row("Beauty", "popularity", 0.0111, 0.0051, seeds=1),  # ‡: counted on all histories
        _row("Beauty", "transitions", 0.0722, 0.0481, seeds=1),
        _row("Beauty", "sasrec", 0.0701, 0.0391),
        _row("Beauty", "sasrec_profile", 0.0733, 0.0402),  # the family's best by NDCG@10
        _row("Beauty", "sasrec+mc", 0.0999, 0.0599),  # ‡
        _row("Beauty", "fusion", 0.0812, 0.0421, cold=0.0131),
        _row("Beauty", "fusion+mc", 0.0903, 0.0533),  # training counts: comparable
        _row("Beauty", "fusion_norm", 0.0855, 0.0411, cold=0.0250),
        _row("Scientific", "fusion", 0.1488, 0.0768, cold=0.0587),
        _row("Scientific", "fusion_norm", 0.1454, 0.0743, cold=0.1136),
    ]
    details = {
        "Beauty/popularity": {"runs": [{"seed": 0, "epochs": 0, "best_epoch": 0, "counts": "histories"}]},
        "Beauty/transitions": {"runs": [{"seed": 0, "epochs": 0, "best_epoch": 0, "counts": "train"}]},
        "Beauty/sasrec": {"runs": _runs(3), "config": CONFIG},
        "Beauty/sasrec_profile": {"runs": _runs(3), "config": CONFIG | {"use_profile": True}},
        "Beauty/sasrec+mc": {"runs": _runs(3, markov_weight=0.5, markov_counts="histories")},
        "Beauty/fusion": {"runs": _runs(3), "config": CONFIG, "cold": _cold(0.0131, 0.0764)},
        "Beauty/fusion+mc": {"runs": _runs(3, markov_weight=0.25, markov_counts="train")},
        "Beauty/fusion_norm": {"runs": _runs(3), "config": CONFIG | {"item_norm": 4.0}, "cold": _cold(0.025, 0.0833)},
        "Scientific/fusion": {"runs": _runs(3), "config": CONFIG, "cold": _cold(0.0587, 0.1447)},
        "Scientific/fusion_norm": {"runs": _runs(3), "config": CONFIG, "cold": _cold(0.1136, 0.1400)},
    }
    long_model = (
        "genrec T5 d128 ff256 2+2L, batch 128, lr 0.003 cosine to 0 over 24 epochs (warmup 500), beam 20, one "
        "encoder position per item, item ID input (started from the coded vectors), sids from text + co-occurrence"
        " (64)"
    )
    gen = [
        {"dataset": "Beauty", "model": "genrec T5 d128 ff256 2+2L", "recall@10": 0.0194, "ndcg@10": 0.0091},
        {"dataset": "Beauty", "model": long_model, "recall@10": 0.0582, "ndcg@10": 0.0303, "epochs": 24},
        {"dataset": "Beauty", "model": long_model + ", + item→next prior (weight 8)", "recall@10": 0.0685}
        | {"ndcg@10": 0.0445, "prior_weight": 8.0, "prior_counts": "train", "train_seconds": 1900.0},
        {"dataset": "Beauty", "model": long_model + ", + item→next prior (weight 8) ‡", "recall@10": 0.0785}
        | {"ndcg@10": 0.0515, "prior_weight": 8.0, "prior_counts": "histories"},
        {"dataset": "Sports", "model": "genrec T5 d128 ff256 2+2L", "recall@10": 0.0701, "ndcg@10": 0.0405}
        | {"prior_weight": 16.0, "prior_counts": "histories"},  # Sports: only a ‡ generative row
    ]
    metrics = {"recall@5": 0.0605, "recall@10": 0.0833, "ndcg@5": 0.0447, "ndcg@10": 0.052}
    hybrid = [
        {
            "dataset": "Beauty",
            "prior_counts": "train",
            "dense": {"train_seconds": 2143.4},
            "generative": {"model": long_model},
            "hybrid": {"weights": {"prior": 0.5, "generative": 0.0}, "test": metrics},
        },
        {"dataset": "Scientific", "prior_counts": "histories", "hybrid": {"test": metrics | {"ndcg@10": 0.0777}}},
    ]
    out = tmp_path / "results"
    out.mkdir()
    for name, data in (("seqrec.json", rows), ("seqrec_runs.json", details), ("generative.json", gen)):
        (out / name).write_text(json.dumps(data), encoding="utf-8")
    (out / "hybrid.json").write_text(json.dumps(hybrid), encoding="utf-8")
    return out


def _summary(tmp_path: Path) -> str:
    page = render_page(_results(tmp_path), tmp_path / "RESULTS.md", ["summary"])
    section = read_section("summary", page)
    assert section is not None
    return section


def _table(section: str, ds: str) -> list[list[str]]:
    """The cells of the rows of dataset ``ds``'s summary table."""
    block = section.split(f"### {ds}\n", 1)[1].split("\n### ", 1)[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines() if line.startswith("| ")]


def test_summary_is_the_first_section() -> None:
    assert SECTION_ORDER[0] == "summary" and SECTION_ORDER.index("seqrec") == 1


def test_summary_picks_each_familys_best_comparable_row(tmp_path: Path) -> None:
    section = _summary(tmp_path)
    rows = {cells[0]: cells for cells in _table(section, "Beauty")[1:]}
    assert "SASRec" in rows and "profile" in rows["SASRec"][1]  # sasrec_profile: the higher NDCG@10
    assert rows["SASRec"][2].startswith("0.0733") and rows["SASRec"][4] == "–"  # its +mc row is ‡: no prior cell
    assert rows["Fusion"][4] == "0.0903 / 0.0533"  # the comparable +mc row beside the model
    assert rows["Fusion"][7] == "0.0131 / 0.0764 (17%)"
    assert rows["Item→next counts"][2] == "0.0722"
    served = rows["**Fusion at one norm ★**"]
    assert served[2] == "0.0855 ± 0.0011" and served[3] == "0.0411" and served[5] == "3"
    assert rows["Generative alone"][2] == "0.0582"  # the better of the two rows without the prior
    assert rows["Generative + prior"][2] == "0.0685"  # training counts, not the ‡ .0785
    assert rows["Hybrid as served"][1] == "dense + prior 0.5, gen 0" and rows["Hybrid as served"][3] == "0.0520"
    published = [c for c in rows if c.startswith("*") and c.endswith("(published)*")]
    assert "*TIGER (published)*" in published and rows["*TIGER (published)*"][2] == "0.0648"


def test_dagger_rows_never_reach_the_summary(tmp_path: Path) -> None:
    section = _summary(tmp_path)
    for dagger_figure in ("0.0111", "0.0999", "0.0785", "0.0701"):  # popularity ‡, sasrec+mc ‡, genrec ‡ (2)
        assert dagger_figure not in section
    assert "Only ‡ rows (see the sections below): Popularity." in section
    assert "Only ‡ rows (see the sections below): Generative + prior." in section  # Sports


def test_families_without_rows_are_omitted_not_filled(tmp_path: Path) -> None:
    section = _summary(tmp_path)
    families = [cells[0] for cells in _table(section, "Scientific")[1:]]
    assert families == ["Fusion", "**Fusion at one norm ★**"]  # nothing else, no placeholder rows
    assert "Not measured on Scientific: Popularity, Item→next counts, SASRec" in section
    assert "Only ‡ rows (see the sections below): Hybrid as served." in section and "0.0777" not in section
    assert "### ml-100k\n\nNot run yet." in section  # no JSON rows at all
    assert omitted_line("X", [], {GEN_PRIOR}).endswith("Only ‡ rows (see the sections below): Generative + prior.")


def test_labels_stay_short_and_details_keep_the_full_configuration(tmp_path: Path) -> None:
    section = _summary(tmp_path)
    for ds in ("Beauty", "Scientific", "Sports"):
        for cells in _table(section, ds)[1:]:
            assert len(cells[1]) <= MAX_LABEL, cells[1]
    details = section.split("### Details", 1)[1]
    assert "sids from text + co-occurrence (64)" in details  # the long model string, under the table
    assert "sids from text + co-occurrence (64)" not in section.split("### Details", 1)[0]
    row = {"model": "genrec T5 d128 ff256 2+2L, " + "item ID input, user token, " * 20, "prior_weight": 8.0}
    assert len(genrec_short(row)) <= MAX_LABEL and genrec_short(row).startswith("T5 2+2L d128, item IDs")


def test_cold_warm_summary_states_the_goals(tmp_path: Path) -> None:
    section = _summary(tmp_path)
    cold = section.split("### New items: cold vs warm", 1)[1].split("### Details", 1)[0]
    lines = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line for line in cold.splitlines()}
    beauty = lines[("Beauty", "Fusion at one norm ★")]
    assert "| 30% |" in beauty and "cold ≥ 40% of warm: missed" in beauty and "warm +9.0% vs fusion" in beauty
    scientific = lines[("Scientific", "Fusion at one norm ★")]
    assert "| 81% |" in scientific and "cold ≥ 50% of warm: met" in scientific
    assert "warm -3.2% vs fusion (≥ −2%): missed" in scientific
    assert "(before)" in lines[("Beauty", "Fusion")] and "| 17% |" in lines[("Beauty", "Fusion")]
    assert "No cold runs yet: Sports, ml-100k." in cold
    assert cold_of({}) is None and cold_of({"cold": {"cold_recall@10": 0.1}}) is None


def test_seqrec_section_puts_dagger_rows_in_their_own_table(tmp_path: Path) -> None:
    page = render_page(_results(tmp_path), tmp_path / "RESULTS.md", ["seqrec"])
    section = read_section("seqrec", page)
    assert section is not None
    comparable, dagger = section.split(f"### {DAGGER_TITLE}", 1)
    dagger = dagger.split("### Details", 1)[0]
    for figure in ("0.0111", "0.0999"):  # Beauty popularity ‡ and sasrec+mc ‡
        assert figure not in comparable and figure in dagger
    assert "| Beauty | Popularity ‡ |" in dagger and "| Beauty | SASRec (ID only) + item→next prior ‡ |" in dagger
    assert "| Fusion (ID + W·text) + item→next prior | 0.0542 | 0.0903" in comparable  # training counts stay
    assert "0.0903" not in dagger and "‡ |" not in comparable
    # long descriptions and the picked prior weights are in the details, not in the labels
    assert "| Fusion at one norm |" in comparable
    assert "Fusion, items at one norm (ID + W·text scaled to norm 4" in section.split("### Details", 1)[1]
    assert "prior weight 0.25" in section.split("### Details", 1)[1]


def test_a_page_without_dagger_rows_has_no_dagger_table(tmp_path: Path) -> None:
    out = tmp_path / "results"
    out.mkdir()
    (out / "seqrec.json").write_text(json.dumps([_row("Beauty", "sasrec", 0.07, 0.04)]))
    page = render_page(out, tmp_path / "RESULTS.md", ["summary", "seqrec"])
    seqrec = read_section("seqrec", page) or ""
    assert DAGGER_TITLE not in seqrec and "| SASRec (ID only) |" in seqrec
    summary = read_section("summary", page) or ""
    assert "| SASRec | SASRec (ID only) | 0.0700 ± 0.0011 | 0.0400 |" in summary  # no run details: model name
    assert [c[0] for c in _table(summary, "Beauty")[1:4]] == ["SASRec", "*SASRec (published)*", "*S3-Rec (published)*"]


@pytest.mark.parametrize("missing", ["generative.json", "hybrid.json", "seqrec_runs.json"])
def test_summary_renders_with_a_results_file_missing(tmp_path: Path, missing: str) -> None:
    out = _results(tmp_path)
    (out / missing).unlink()
    page = render_page(out, tmp_path / "RESULTS.md", ["summary"])
    assert "### Beauty" in (read_section("summary", page) or "")


def test_a_row_whose_runs_all_stopped_at_their_epoch_count_names_the_epochs_not_the_budget() -> None:
    from training.reports.labels import fixed_epochs, seqrec_config

    cfg = {"hidden": 64, "n_layers": 2, "epochs": 11, "max_minutes": 45.0}
    at_epochs = [{"stop_reason": "max_epochs"}, {"stop_reason": "max_epochs"}]
    assert fixed_epochs(at_epochs)
    assert seqrec_config("sasrec", cfg, None, fixed_epochs(at_epochs)) == "d64 2L, 11 epochs"
    mixed = [*at_epochs, {"stop_reason": "budget"}]
    assert not fixed_epochs(mixed) and not fixed_epochs([])
    assert seqrec_config("sasrec", cfg, None, fixed_epochs(mixed)) == "d64 2L, 45-min budget"


def test_a_distilled_generative_row_says_so_in_its_short_label() -> None:
    model = "genrec T5 d128 ff256 2+2L, batch 128, item ID input, distilled from the dense model (λ 1, top 100, T 1)"
    assert genrec_short({"model": model, "epochs": 20}) == "T5 2+2L d128, distilled, item IDs, 20 ep"
    assert "distilled" not in genrec_short({"model": model.split(", distilled")[0], "epochs": 20})
