"""benchmarks/beam.py: our batched decoder and HF generate + prefix_allowed_tokens_fn agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.beam import main, random_sids, save_run
from service.core.sid import SidLayout


def test_random_catalog_is_unique_and_in_range() -> None:
    layout = SidLayout(3, 16, 8)
    sids = random_sids(400, layout, seed=0)
    assert sids.shape == (400, 4)
    assert len({tuple(r) for r in sids.tolist()}) == 400
    assert sids[:, :3].max() < 16


@pytest.mark.slow
@pytest.mark.parametrize("history_input", ["tokens", "items"])
def test_benchmark_reports_same_topk_as_hf_generate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], history_input: str
) -> None:
    out = tmp_path / "beam.json"
    args = "--json --items 2000 --batch 4 --beam 6 --k 6 --history 5 --reps 1 --ref-reps 1 --threads 1 --device cpu"
    rc = main([*args.split(), "--out", str(out), "--history-input", history_input])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == [printed]
    assert printed["same_topk"] is True
    assert printed["max_score_diff"] < 1e-3
    assert printed["batched_per_s"] > 0 and printed["reference_per_s"] > 0
    assert np.isclose(printed["speedup"], printed["batched_per_s"] / printed["reference_per_s"], rtol=0.05)
    assert printed["encoder_s_per_batch"] > 0
    assert printed["history_input"] == history_input
    assert printed["prior_guided_per_s"] > 0
    assert np.isclose(printed["prior_guided_cost"], printed["batched_per_s"] / printed["prior_guided_per_s"], rtol=0.05)


def test_saved_runs_keep_one_run_per_device(tmp_path: Path) -> None:
    out = tmp_path / "beam.json"
    out.write_text(json.dumps({"device": "NVIDIA H200", "speedup": 12.0}))  # an older single-run file
    save_run(out, {"device": "cpu", "speedup": 3.0})
    runs = save_run(out, {"device": "cpu", "speedup": 4.0})
    assert runs == json.loads(out.read_text())
    assert runs == [{"device": "cpu", "speedup": 4.0}, {"device": "NVIDIA H200", "speedup": 12.0}]
    # runs with the other encoder input are kept beside (runs without the key are token runs)
    items = {"device": "cpu", "speedup": 5.0, "history_input": "items"}
    runs = save_run(out, items)
    assert runs == [{"device": "cpu", "speedup": 4.0}, items, {"device": "NVIDIA H200", "speedup": 12.0}]
