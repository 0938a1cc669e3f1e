"""benchmarks.workers' arithmetic (per-round paired ratios) and benchmarks.load's --compare-workers parsing."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from benchmarks import load, workers

MULTI = "ours-2p"


def _round(one: float, multi: float, floor: float, p99_one: float, p99_multi: float) -> dict[str, Any]:
    rec = {
        "ours": {"req_per_s": one, "p99_ms": p99_one, "errors": 0, "timeouts": 0},
        MULTI: {"req_per_s": multi, "p99_ms": p99_multi, "errors": 1, "timeouts": 0, "client_cpu_ms_per_req": 0.4},
        "floor": {"req_per_s": floor, "p50_ms": 2.0},
    }
    emb = {"ours": {"items_per_s": 10.0, "p99_ms": 100.0}, MULTI: {"items_per_s": 15.0, "p99_ms": 50.0}}
    return {"round": 1, "loadavg": [3.0, 2.0, 1.0], "recommend": {20: rec}, "embed": {"short 32x1": emb}}


def test_ratios_are_taken_within_a_round_then_summarised() -> None:
    # the background moves between rounds (all systems 2x faster in round 2): the paired ratio does not
    rounds = [_round(100, 160, 200, 40, 20), _round(200, 320, 400, 20, 10), _round(100, 190, 200, 40, 40)]
    s = workers.summarize(rounds, MULTI)
    r = s["recommend"][20]
    assert r["multi_over_one_throughput"] == {"median": 1.6, "min": 1.6, "max": 1.9, "n": 3}
    assert r[f"{MULTI}_throughput_over_floor"]["median"] == pytest.approx(0.8)
    assert r["ours_throughput_over_floor"]["median"] == pytest.approx(0.5)
    assert r[f"{MULTI}_p99_over_floor_p50"]["median"] == pytest.approx(10.0)  # p99 / floor p50
    assert r["multi_over_one_p99"]["median"] == pytest.approx(0.5)  # multi p99 / one p99
    assert r["errors"] == 3
    e = s["embed"]["short 32x1"]
    assert e["multi_over_one_throughput"]["median"] == pytest.approx(1.5)
    assert e["multi_over_one_p99"]["median"] == pytest.approx(0.5)
    assert s["loadavg_1m"] == [3.0, 3.0]


def test_compare_workers_values() -> None:
    assert load.parse_compare("2") == (2, None)
    assert load.parse_compare("3:1") == (3, 1)
    for bad in ("x", "0", "2:0", "2:y"):
        with pytest.raises(argparse.ArgumentTypeError):
            load.parse_compare(bad)
    assert load.compare_name(2) == "ours-2p" and load.compare_name(2, 1) == "ours-2px1t"
    args = load.build_parser().parse_args(["--compare-workers", "2", "--compare-workers", "2:2"])
    assert args.compare_workers == [(2, None), (2, 2)]
