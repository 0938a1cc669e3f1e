"""The build's optional generative stages write what the service's runtime loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.core.manifest import Manifest
from service.core.sid import load_semantic_ids
from service.recommender.generative import GenerativeRuntime
from tests.unit.training.genrec.splits import cyclic_split
from training.config import BuildConfig, GenRecConfig, SemanticIdConfig
from training.pipeline.stages import check_config, generative_stages

# TIGER's layout at a constant lr (the GenRecConfig defaults are the CPU configs' model).
TIGER: dict[str, Any] = {
    "history_input": "tokens",
    "item_id_input": False,
    "item_id_init": "random",
    "lr_schedule": "constant",
    "warmup_steps": 0,
}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(
    "inputs",
    [
        {},
        {
            "history_input": "items",
            "item_id_input": True,
            "item_id_init": "vectors",  # started from what the RQ-VAE coded (text + co-occurrence)
            "prior_weights": [0.5, 2.0],
        },
    ],
    ids=["tokens", "items+ids+cf-sids"],
)
def test_stages_off_by_default_and_on_when_configured(tmp_path: Path, inputs: dict[str, Any]) -> None:
    split = cyclic_split(n_items=40, n_users=60)
    vectors = np.random.default_rng(0).normal(size=(40, 12)).astype(np.float32)
    assert generative_stages(BuildConfig(), split, vectors, tmp_path) == ({}, {})
    cfg = BuildConfig(
        with_semantic_ids=True,
        with_genrec=True,
        semantic_ids=SemanticIdConfig(
            n_levels=2, codebook_size=8, hidden=[16], latent_dim=4, epochs=3, cf_dim=4 if inputs else 0
        ),
        genrec=GenRecConfig(
            d_model=16, d_ff=32, n_heads=2, d_kv=8, epochs=1, beam=10, val_users=20, test_users=20, **TIGER | inputs
        ),
    )
    extra, metrics = generative_stages(cfg, split, vectors, tmp_path)
    assert set(extra) == {"semantic_ids", "genrec"} and "recall@10" in metrics["genrec"]["test"]
    spec, table, _ = load_semantic_ids(tmp_path, extra["semantic_ids"])
    assert len(table) == 40 and spec.n_levels == 2
    # what the service loads from a manifest with these sections
    manifest = Manifest.from_dict(
        {
            "version": "v",
            "created_at": "now",
            "dataset": {},
            "encoder": {
                "base_model": "x",
                "dim": 12,
                "max_length": 8,
                "pooling": "mean",
                "normalize": True,
                "onnx_fp32": "a",
                "onnx_int8": "b",
                "tokenizer_dir": "c",
            },
            "items": {"count": 40, "ids": "ids.json", "text_vectors": "v.npy", "catalog": "c.jsonl"},
            "extra": json.loads(json.dumps(extra)),
            "format_version": 1,
        }
    )
    ids = [f"I{i}" for i in range(40)]
    runtime = GenerativeRuntime.from_manifest(tmp_path, manifest, ids, "cpu")
    cat = runtime.catalog("c", ids, vectors)
    rows, _ = runtime.decode([cat.tokens[[0, 1]]], cat, 5)
    assert ((rows >= 0) & (rows < 40)).all()
    # prior-guided decoding: the weight picked on validation is what the runtime serves with
    assert runtime.prior_weight == (extra["genrec"]["prior_weight"] if inputs else 0.0)
    assert runtime.prior_weight in ((0.5, 2.0) if inputs else (0.0,))
    assert cat.tokens.shape[1] == spec.layout.depth + (1 if inputs.get("item_id_input") else 0)
    # a new item is coded from its text alone (a zero collaborative part where the sids have one)
    assert spec.cf_dim == (4 if inputs else 0)
    grown = runtime.catalog("c2", [*ids, "NEW"], np.concatenate([vectors, vectors[:1]]))
    assert grown.new_items == 1 and len({tuple(r) for r in grown.table.sids.tolist()}) == 41


def test_the_build_refuses_a_distilled_genrec_before_any_work() -> None:
    cfg = BuildConfig(with_genrec=True, genrec=GenRecConfig(distill_weight=1.0))
    with pytest.raises(ValueError, match="the build does not distil"):
        check_config(cfg)
    check_config(BuildConfig(with_genrec=True))  # off (the default): fine
