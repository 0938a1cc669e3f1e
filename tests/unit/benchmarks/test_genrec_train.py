"""benchmarks/genrec_train.py: both encoder inputs train on the same histories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.genrec_train import main


def test_benchmark_times_both_encoder_inputs_on_the_same_histories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "tiny.yaml"
    # a config with the item-ID extra on (the defaults): the benchmark compares the two inputs without it
    cfg.write_text("d_model: 32\nd_ff: 64\nn_heads: 2\nd_kv: 16\nmax_items: 6\nitem_id_input: true\n")
    args = "--json --quick --reps 2 --batch-size 8 --threads 1 --device cpu --items 500"
    rc = main([*args.split(), "--config", str(cfg)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["tokens_steps_per_s"] > 0 and out["items_steps_per_s"] > 0
    assert out["speedup"] == pytest.approx(out["items_steps_per_s"] / out["tokens_steps_per_s"], rel=0.02)
    # depth 4: a history of n items is 4n + 1 token positions (EOS last) or n + 1 item positions
    assert out["tokens_encoder_positions"] == pytest.approx(4 * out["items_encoder_positions"] - 3, abs=0.2)
    assert 2 <= out["items_encoder_positions"] <= 7
    assert out["batch_size"] == 8 and out["model"] == "T5 d32 ff64 2+2L"
