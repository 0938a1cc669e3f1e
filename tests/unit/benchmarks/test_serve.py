"""Helpers shared by the latency benchmarks."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.serve import latency_rows, resolve_set


def test_latency_rows_give_percentiles_and_ratios_to_the_base_kind() -> None:
    rows = latency_rows({"model": [1.0, 2.0, 3.0, 4.0, 100.0], "prior": [2.0, 4.0, 6.0, 8.0, 10.0]}, "model")
    assert rows["model"]["p50_ms"] == 3.0 and rows["model"]["p50_ratio"] == 1.0
    assert rows["prior"]["p50_ms"] == 6.0 and rows["prior"]["p50_ratio"] == 2.0
    assert rows["model"]["p95_ms"] == pytest.approx(80.8)  # numpy's linear interpolation
    with pytest.raises(KeyError):
        latency_rows({"prior": [1.0]}, "model")


def test_resolve_set_takes_a_set_folder_or_the_latest_under_a_root(tmp_path: Path) -> None:
    one = tmp_path / "artifacts" / "20260101-000000-demo"
    one.mkdir(parents=True)
    (one / "manifest.json").write_text("{}")
    (tmp_path / "artifacts" / "LATEST").write_text("20260101-000000-demo\n")
    assert resolve_set(one) == one
    assert resolve_set(tmp_path / "artifacts") == one
