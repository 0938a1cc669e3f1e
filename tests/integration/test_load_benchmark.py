"""benchmarks.load end to end in its smoke mode: a real artifact set (demo shop, real encoder export),
our service as a subprocess over loopback, infinity skipped; the JSON has every section and shape,
the markdown renders from it, and nothing the run started outlives it. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from benchmarks import load
from benchmarks._artifacts import build_small_demo

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("loadbench")
    return build_small_demo(base, sizes={"items": 300, "users": 600, "seqrec_epochs": 2, "seqrec_minutes": 0.5})


def _ps_lines(needle: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if needle in line and "pytest" not in line]


def test_tiny_run_against_our_service_only(demo_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "serving.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "benchmarks.load", "--json", "--tiny", "--rounds", "2", "--no-peers",
           "--artifacts", str(demo_set), "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert json.loads(proc.stdout) == res  # --json prints what --out holds

    assert res["benchmark"] == "load" and res["schema"] == load.SCHEMA_VERSION
    assert res["systems"]["ours"]["status"] == "ok"
    for peer in load.PEERS:
        assert res["systems"][peer]["status"] == "skipped" and "--no-peers" in res["systems"][peer]["reason"]
    assert res["artifacts"]["version"] == demo_set.name
    assert 100 <= res["texts"]["long"]["mean_tokens"] <= 128 and res["texts"]["short"]["mean_tokens"] < 20

    plan = load.make_plan(False, tiny=True)
    assert [r["workload"] for r in res["embed"]] == [w.name for w in plan.embed]
    for row in res["embed"]:
        ours = row["systems"]["ours"]
        assert len(ours["rounds"]) == 2 and row["ratios"] == {}
        for r in ours["rounds"]:
            assert r["ok"] + r["errors"] + r["timeouts"] + r["shed"] == r["requests"] > 0
            assert len(r["loadavg"]) == 3
        assert set(load.METRICS) <= set(ours["median"])
    assert [r["clients"] for r in res["recommend"]] == [1, 20, 100]
    assert len(res["floor"]["rounds"]) == 2 and res["floor"]["median"]["p50_ms"] > 0
    for row in res["recommend"]:
        assert row["systems"]["ours"]["median"]["req_per_s"] > 0
        assert row["throughput_over_floor"] is not None
    g = res["giveup"]["ours"]
    assert g["clients"] == plan.giveup.clients and g["idle_ms"] > 0
    assert g["burst"]["ok"] + g["burst"]["timeouts"] + g["burst"]["shed"] + g["burst"]["errors"] == g["clients"]
    assert g["after_ms"] is not None or g["after_timed_out"]

    page = tmp_path / "RESULTS.md"
    assert load.main(["--results-md", str(page), "--from", str(out)]) == 0
    text = page.read_text()
    assert "<!-- BEGIN serving -->" in text and "| long 1x1 |" in text and "### Give-up" in text

    # every server and child the run started is gone
    with pytest.raises(httpx.ConnectError):
        httpx.get(res["systems"]["ours"]["url"] + "/healthz", timeout=5, trust_env=False)
    assert _ps_lines(str(demo_set)) == []
    assert _ps_lines("recsvc-load-") == []


def test_workers_benchmark_runs_one_and_two_processes_side_by_side(demo_set: Path, tmp_path: Path) -> None:
    """benchmarks.workers on the real service: one process and the embedded multi-process mode (writer +
    reader, real ONNX encoder) answer every workload without errors; nothing outlives the run."""
    out = tmp_path / "workers.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "benchmarks.workers", "--quick", "--rounds", "1", "--artifacts", str(demo_set),
           "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["options"] == {"workers": 2, "threads": 2, "per_process_threads": 1, "rounds": 1}
    (rnd,) = res["rounds"]
    for clients, got in rnd["recommend"].items():
        for name in ("ours", "ours-2p"):
            r = got[name]
            assert r["ok"] == r["requests"] > 0 and r["errors"] == r["timeouts"] == 0, (clients, name, r)
        assert got["floor"]["p50_ms"] > 0
    for got in rnd["embed"].values():
        assert all(got[name]["ok"] + got[name]["shed"] == got[name]["requests"] > 0 for name in ("ours", "ours-2p"))
    s = res["summary"]
    assert sorted(s["recommend"], key=int) == ["1", "20", "100"]
    assert all(r["multi_over_one_throughput"]["n"] == 1 and r["errors"] == 0 for r in s["recommend"].values())
    assert sorted(s["embed"]) == ["long 32x1", "short 32x1"]
    assert _ps_lines(str(demo_set)) == [] and _ps_lines("service.supervisor child") == []
