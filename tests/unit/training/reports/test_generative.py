"""The generative section of the results page, rendered from the JSON results."""

from __future__ import annotations

import json
from pathlib import Path

from training.reports.generative import render_section, write_generative_section


def test_results_section_renders_quality_rows_and_beam_benchmark(tmp_path: Path) -> None:
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
