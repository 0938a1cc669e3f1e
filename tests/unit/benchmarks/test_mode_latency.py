"""The every-mode latency benchmark's summary: percentiles and ratios to dense."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.mode_latency import main, summarize
from tests.conftest import TinyArtifacts


def test_summary_has_p50_p95_p99_and_both_ratios_to_dense() -> None:
    dense = [float(x) for x in range(1, 101)]  # 1..100 ms
    slow_tail = [*([2.0] * 98), 500.0, 500.0]
    rows = summarize({"dense": dense, "generative": [2 * x for x in dense], "hybrid": slow_tail})
    assert rows["dense"]["p50_ratio"] == 1.0 and rows["dense"]["p99_ratio"] == 1.0
    assert rows["dense"]["p99_ms"] == pytest.approx(np.percentile(dense, 99), abs=0.01)
    assert rows["generative"]["p50_ratio"] == 2.0 and rows["generative"]["p99_ratio"] == 2.0
    # a tail two requests long shows in p99, not in p50
    assert rows["hybrid"]["p50_ms"] == 2.0 and rows["hybrid"]["p99_ms"] == 500.0
    assert rows["hybrid"]["p50_ratio"] < 0.1 and rows["hybrid"]["p99_ratio"] > 4.9
    assert rows["generative"]["p50_ms"] <= rows["generative"]["p95_ms"] <= rows["generative"]["p99_ms"]


def test_a_set_without_the_generative_model_is_refused_with_the_fix(tiny_artifacts: TinyArtifacts) -> None:
    with pytest.raises(SystemExit, match=r"no generative model .*make demo-build"):
        main(["--artifacts", str(tiny_artifacts.artifacts_dir), "--quick"])
