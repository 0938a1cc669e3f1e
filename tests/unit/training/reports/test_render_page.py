"""`recsvc-train report`: the results page is rendered from the JSON results alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from training.cli import main, make_parser
from training.jobs.bench_seqrec import overrides
from training.reports import render_page
from training.reports.page import read_section

REPO = Path(__file__).resolve().parents[4]


def test_the_committed_page_is_what_report_renders_from_the_committed_json(tmp_path: Path) -> None:
    """Every number on docs/RESULTS.md comes from docs/results/*.json through one command."""
    results = tmp_path / "results"
    shutil.copytree(REPO / "docs" / "results", results)
    page = tmp_path / "RESULTS.md"
    shutil.copy(REPO / "docs" / "RESULTS.md", page)
    assert main(["report", "--results", str(results), "--page", str(page)]) == 0
    assert page.read_text(encoding="utf-8") == (REPO / "docs" / "RESULTS.md").read_text(encoding="utf-8")
    assert (results / "seqrec.png").is_file() and (results / "encoder.png").is_file()


def test_report_renders_a_results_folder_into_a_new_page(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    row = {"dataset": "Mine", "model": "popularity", "recall@5": 0.01, "recall@10": 0.02, "ndcg@5": 0.005}
    row |= {"ndcg@10": 0.0075, "std_recall@10": None, "seeds": [0], "train_seconds": 1.0, "cold_recall@10": None}
    (results / "seqrec.json").write_text(json.dumps([row]))
    page = render_page(results, tmp_path / "page" / "RESULTS.md", ["seqrec"])
    section = read_section("seqrec", page)
    assert section is not None and "### Mine" in section and "| Popularity | 0.0100 | 0.0200 |" in section
    assert "](../results/seqrec.png)" in section  # the plot beside the JSON, linked relative to the page
    assert read_section("encoder", page) is None  # only the sections asked for
    with pytest.raises(ValueError, match="unknown section"):
        render_page(results, page, ["seqrec", "charts"])
    with pytest.raises(SystemExit, match="unknown section"):
        main(["report", "--results", str(results), "--page", str(page), "--sections", "charts"])


def test_bench_seqrec_writes_docs_only_when_asked() -> None:
    p = make_parser()
    plain = p.parse_args(["bench-seqrec", "--data", "d"])
    assert "out" not in overrides(plain)  # the config's default: var/results
    assert overrides(p.parse_args(["bench-seqrec", "--data", "d", "--out", "x"]))["out"] == "x"
    assert overrides(p.parse_args(["bench-seqrec", "--data", "d", "--update-docs"]))["out"] == "docs/results"
    with pytest.raises(ValueError, match="--update-docs writes docs/results"):
        overrides(p.parse_args(["bench-seqrec", "--data", "d", "--out", "x", "--update-docs"]))
