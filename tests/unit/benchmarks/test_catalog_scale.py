"""The catalog-scale benchmark: synthetic data, ground truth, recall, the pick of a default, and
each engine on a small real catalog (exact numpy, qdrant-client local, qdrant-edge HNSW)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import catalog_scale as cs


def test_synthetic_vectors_are_seeded_and_clustered() -> None:
    a = cs.synthetic_vectors(3000, 16, seed=1)
    assert a.shape == (3000, 16) and a.dtype == np.float32
    assert np.array_equal(a, cs.synthetic_vectors(3000, 16, seed=1))
    assert not np.array_equal(a, cs.synthetic_vectors(3000, 16, seed=2))
    # clustered: an item's nearest neighbour is much closer than a random item
    d_nn = np.sort(((a[:50, None, :] - a[None, :, :]) ** 2).sum(-1), axis=1)[:, 1]
    d_rand = ((a[:50] - a[1000:1050]) ** 2).sum(-1)
    assert np.median(d_nn) < 0.5 * np.median(d_rand)


def test_queries_exclude_the_item_they_came_from() -> None:
    v = cs.synthetic_vectors(500, 8)
    q, rows = cs.queries(v, 20)
    assert q.shape == (20, 8) and rows.shape == (20, cs.EXCLUDE)
    for i in range(20):
        top = cs.exact_top(v, q[i], rows[i].tolist(), 10)
        assert not set(top) & set(rows[i].tolist()) and len(top) == 10
        scores = v[top] @ q[i]
        assert np.all(np.diff(scores) <= 0)  # best first


def test_recall_at() -> None:
    assert cs.recall_at([1, 2, 3], [3, 2, 1], k=3) == 1.0
    assert cs.recall_at([1, 2, 9, 8], [1, 2, 3, 4], k=4) == 0.5
    assert cs.recall_at([5, 1], [1, 2, 3], k=1) == 0.0  # only the first k of each count


def _row(engine: str, size: int, p99: float, recall: float, ef: int | None = None) -> dict[str, Any]:
    return {"engine": engine, "size": size, "status": "ok",
            "searches": [{"ef": ef, "p99_ms": p99, "recall_at_10": recall}]}  # fmt: skip


def test_recommend_default_takes_the_fastest_accurate_engine_at_the_largest_size() -> None:
    rows = [
        _row("exact", 1000, 1.0, 1.0),
        _row("edge", 1000, 0.5, 0.999, 64),  # smaller size: ignored
        _row("exact", 10_000, 9.0, 1.0),
        _row("qdrant-local", 10_000, 900.0, 1.0),
        _row("edge", 10_000, 2.0, 0.95, 64),  # fast but not accurate enough
        _row("edge", 10_000, 4.0, 0.995, 256),
    ]
    assert cs.recommend_default(rows).startswith("edge (ef 256): p99 4.0 ms at 10,000 items")
    rows[-1]["searches"][0]["p99_ms"] = 9.0  # a tie goes to exact (no index to build)
    assert cs.recommend_default(rows).startswith("exact:")
    assert cs.recommend_default([{"engine": "edge", "size": 5, "status": "stopped"}]) == "no engine finished"


@pytest.mark.parametrize("engine", cs.ENGINES)
def test_each_engine_finds_the_exact_neighbours_on_a_small_catalog(engine: str) -> None:
    row = cs.run_engine(engine, size=2000, dim=16, n_queries=8, efs=[256], budget_s=60)
    assert row["engine"] == engine and row["size"] == 2000 and row["build_items_per_s"] > 0
    (s,) = row["searches"]
    assert s["queries"] == 8
    assert s["recall_at_10"] >= (0.9 if engine.startswith("edge") else 1.0)
    assert s["p50_ms"] <= s["p99_ms"] and row["peak_rss_mb"] >= row["rss_mb"] > 0


def test_render_shows_rows_failures_reindex_and_the_pick() -> None:
    ok = {"engine": "exact", "size": 1000, "status": "ok", "build_s": 0.1, "build_items_per_s": 10000.0,
          "data_mb": 2.0, "index_mb": 0.5, "peak_rss_mb": 90.0,
          "searches": [{"ef": None, "queries": 10, "p50_ms": 0.3, "p99_ms": 0.9, "recall_at_10": 1.0,
                        "loadavg": [1.5, 1.0, 1.0]}]}  # fmt: skip
    res = {
        "dim": 64,
        "loadavg_start": [1.0, 1.0, 1.0],
        "search": [ok, {"engine": "edge", "size": 1000, "status": "stopped after 60s"}],
        "reindex": [
            {
                "items": 300,
                "kind": "short",
                "status": "succeeded",
                "seconds": 2.0,
                "items_per_s": 150.0,
                "encode_items_per_s": 300.0,
                "loadavg": [2.0, 1.0, 1.0],
            },
            {
                "items": 300,
                "kind": "long",
                "inflight": 1,
                "status": "succeeded",
                "seconds": 4.0,
                "items_per_s": 75.0,
                "encode_items_per_s": 80.0,
                "stage_s": {"encoding": 3.75, "indexing": 0.2, "swapping alias": 0.01},
                "loadavg": [2.0, 1.0, 1.0],
            },
        ],
        "recommended": "exact: p99 0.9 ms",
    }
    text = cs.render(res)
    assert "| 1,000 | exact | – | 0.1 | 10,000 | 2 | 0 | 90 | 0.30 | 0.90 | 1.000 | 10 | 1.5 |" in text
    assert "| 1,000 | edge | stopped after 60s |" in text
    assert "| 300 | short | default | succeeded | 2.0 | 150.0 | 300.0 | – | 2.0 |" in text
    assert "| 300 | long | 1 | succeeded | 4.0 | 75.0 | 80.0 | encoding 3.8, indexing 0.2 | 2.0 |" in text
    assert "Recommended default by these figures: exact: p99 0.9 ms" in text


@pytest.mark.parametrize("kind", ["short", "long"])
def test_synthetic_catalog_is_a_valid_catalog_of_new_items(tmp_path: Path, kind: str) -> None:
    from service.artifacts import read_catalog
    from service.core.items import item_text

    items = read_catalog(cs.synthetic_catalog(tmp_path / "c.jsonl", 40, kind))
    assert len(items) == 40 and len({it.item_id for it in items}) == 40
    words = np.mean([len(item_text(it).split()) for it in items])
    assert (words < 12) if kind == "short" else (words > 40)


def test_mips_augment_keeps_the_dot_product_ranking_under_cosine() -> None:
    v = cs.synthetic_vectors(400, 8, seed=3)
    aug = cs.mips_augment(v)
    assert aug.shape == (400, 9)
    norms = np.linalg.norm(aug, axis=1)
    assert np.allclose(norms, norms.max(), rtol=1e-5)
    q = v[7] + 0.1
    q_aug = np.append(q, 0.0)
    cos = (aug @ q_aug) / (norms * np.linalg.norm(q_aug))
    assert np.array_equal(np.argsort(-cos)[:20], np.argsort(-(v @ q))[:20])


def test_command_line_runs_each_engine_in_its_own_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    out = tmp_path / "scale.json"
    argv = ["--sizes", "600", "--engines", "exact,edge-mips", "--queries", "4", "--ef", "128", "--reindex", "0",
            "--json", "--out", str(out)]  # fmt: skip
    assert cs.main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert res == json.loads(out.read_text())
    assert [(r["engine"], r["size"], r["status"]) for r in res["search"]] == [
        ("exact", 600, "ok"),
        ("edge-mips", 600, "ok"),
    ]
    assert res["search"][1]["searches"][0]["ef"] == 128 and "reindex" not in res
    assert res["recommended"].split(":")[0] in ("exact", "edge-mips (ef 128)")
