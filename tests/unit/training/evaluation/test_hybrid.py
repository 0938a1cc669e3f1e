"""bench-genrec --hybrid: the served dense model, dense + prior and hybrid mode scored on the genrec split,
the merge being the service's own function (training/evaluation/hybrid.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from service.core.transitions import TransitionPrior
from service.recommender.hybrid import HybridWeights
from tests.unit.training.genrec.splits import cyclic_split, write_cyclic_dataset
from training.config import SeqRecConfig
from training.evaluation.hybrid import GenerativeSide, dense_side, hybrid_ranks, weight_grid
from training.metrics import metrics_from_ranks
from training.seqrec.model import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_hybrid_ranks_follow_the_prior_weight_that_validation_picks() -> None:
    """An untrained dense model and a beam that never holds the target: only the prior term (next = last + 1,
    which the training counts know) puts the target first. Weights without the prior miss it."""
    split = cyclic_split(n_items=30, n_users=60)
    torch.manual_seed(0)
    model = build_model(
        SeqRecConfig(hidden=16, n_layers=1, n_heads=1, max_len=8, use_text=False), split.n_items, None, None
    )
    cases = split.val
    dense = dense_side(model, cases, pool=5)
    assert dense.top.shape == (len(cases), 5) and dense.users.shape == (len(cases), 16)
    # the dense top 5 really is the top 5 by dot product
    assert np.array_equal(np.sort(dense.top[0]), np.sort(np.argsort(-(dense.table @ dense.users[0]))[:5]))
    rng = np.random.default_rng(0)
    beam_rows = np.array([[(c.target + 1 + j) % split.n_items for j in range(4)] for c in cases])  # never the target
    gen = GenerativeSide(beam_rows, np.sort(rng.normal(size=beam_rows.shape)).astype(np.float32)[:, ::-1].copy())
    prior = TransitionPrior.from_sequences(split.train, split.n_items, 1.0)
    grid = weight_grid(prior=True)
    ranks = hybrid_ranks(cases, dense, gen, prior, grid, k=10)  # [G, C]
    ndcg = [metrics_from_ranks(r)["ndcg@10"] for r in ranks]
    best = grid[int(np.argmax(ndcg))]
    assert best.prior > 0
    assert metrics_from_ranks(ranks[grid.index(best)])["recall@5"] > 0.9
    # without the prior the target enters the pool only through the dense top 5 (30 items, untrained model)
    no_prior = metrics_from_ranks(ranks[grid.index(HybridWeights(0.0, 0.0))])["recall@10"]
    assert no_prior < 0.5
    # a beam bonus large enough puts the beam's items (never the target) first, but its last one, whose
    # bonus is 0 like an item outside the beam: the target ranks below the other three
    top_beam = hybrid_ranks(cases, dense, gen, None, [HybridWeights(0.0, 1e6)], k=10)
    assert (top_beam >= beam_rows.shape[1] - 1).all()


def test_bench_genrec_hybrid_writes_an_entry_and_the_page_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.cli import main

    args = write_cyclic_dataset(tmp_path, n_items=30, n_users=60)
    monkeypatch.chdir(tmp_path)
    args += ["--history-input", "items", "--threads", "1", "--prior-weights", "1,4"]
    args += ["--hybrid", "--hybrid-dense-minutes", "0.05", "--hybrid-val-users", "40"]
    assert main(args) == 0
    entries = json.loads((tmp_path / "docs/results/hybrid.json").read_text())
    assert len(entries) == 1
    e = entries[0]
    assert e["dataset"] == "cyc" and e["val_cases"] == 40 and e["test_cases"] == 60 and e["prior_counts"] == "train"
    for part in (e["dense"], e["dense_prior"], e["hybrid"]):
        assert all(0 <= v <= 1 for v in part["test"].values())
    w = e["hybrid"]["weights"]
    grid = e["hybrid"]["val_ndcg@10"]
    assert grid[HybridWeights(**w).label()] == max(grid.values())  # picked on validation
    assert e["hybrid"]["val"]["ndcg@10"] == pytest.approx(max(grid.values()), abs=1e-4)
    assert (
        e["generative"]["test"]["recall@10"]
        == json.loads((tmp_path / "docs/results/generative.json").read_text())[0]["recall@10"]
    )
    page = (tmp_path / "docs/RESULTS.md").read_text()
    assert "### Hybrid mode, as served" in page
    assert f"| **hybrid** (prior {w['prior']:g}, generative {w['generative']:g}; genrec prior" in page
