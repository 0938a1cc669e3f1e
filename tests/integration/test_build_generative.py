"""Build with the optional generative stages: the artifact set carries semantic IDs and a
genrec model that the service's runtime loads and decodes with."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from service.core.manifest import Manifest, latest_version
from service.core.sid import load_semantic_ids
from service.recommender.generative import GenerativeRuntime
from training.cli import main as cli_main
from training.config import DemoConfig
from training.data.demo import generate_demo

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = """
seqrec: {epochs: 1, max_minutes: 0.5}
with_semantic_ids: true
with_genrec: true
semantic_ids: {epochs: 5, hidden: [64], codebook_size: 32}
genrec: {d_model: 32, d_ff: 64, n_heads: 2, d_kv: 16, epochs: 1, max_minutes: 0.3, val_users: 50, test_users: 50}
"""


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_build_writes_semantic_ids_and_genrec(tmp_path: Path) -> None:
    data = generate_demo(tmp_path / "data", DemoConfig(n_items=200, n_users=400, seed=5))
    cfg = tmp_path / "build.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "artifacts"
    rc = cli_main(["build", "--data", str(data), "--out", str(out), "--name", "gen", "--config", str(cfg), "--no-push"])
    assert rc == 0
    root = latest_version(out)
    manifest = Manifest.read(root)
    manifest.verify_files(root)
    spec, table, _ = load_semantic_ids(root, manifest.extra["semantic_ids"])
    assert len(table) == 200 and spec.codebook_size == 32
    assert len({tuple(r) for r in table.sids.tolist()}) == 200
    assert "recall@10" in manifest.metrics["genrec"]["test"]
    ids = json.loads((root / manifest.items.ids).read_text())
    runtime = GenerativeRuntime.from_manifest(root, manifest, ids, "cpu")
    vectors = np.load(root / manifest.items.text_vectors)
    cat = runtime.catalog("built", ids, vectors)
    rows, _ = runtime.decode([cat.tokens[[0, 1, 2]]], cat, 5)
    assert ((rows >= 0) & (rows < 200)).all()
