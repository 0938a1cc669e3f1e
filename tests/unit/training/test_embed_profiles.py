"""The build's profile stage: sentences in training order, per-user vectors, field schema, errors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from service.core.profiles import NO_PROFILE, profile_sentence
from service.encoding.fake import FakeEncoder
from tests.conftest import make_catalog, write_jsonl
from training.config import BuildConfig, DemoConfig, SeqRecConfig
from training.data.demo import generate_demo
from training.data.loader import load_dataset
from training.encoder.profile_vectors import profile_inputs
from training.jobs.build import build
from training.pipeline.stages import write_profile_artifacts
from training.seqrec.train import SeqRecResult


class CountingEncoder(FakeEncoder):
    def __init__(self) -> None:
        super().__init__(dim=16)
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return super().encode(texts)


def test_profile_inputs_follow_the_sequences_and_embed_each_sentence_once(tmp_path: Path) -> None:
    data = generate_demo(tmp_path / "demo", DemoConfig(n_items=40, n_users=30, seed=1))
    # one user loses its profile row, one profile row has no sequence
    rows = (data / "users.jsonl").read_text().splitlines()
    (data / "users.jsonl").write_text("\n".join([*rows[1:], '{"user_id": "nobody", "age": 40}']) + "\n")
    ds = load_dataset(data)
    assert ds.users is not None
    enc = CountingEncoder()
    inputs = profile_inputs(ds, enc.encode)
    assert len(enc.calls) == 1
    assert inputs.train.shape == (ds.n_users, 16) and inputs.dim == 16
    first = ds.sequences[0].user_id
    assert first not in ds.users
    np.testing.assert_allclose(inputs.train[0], enc.encode([NO_PROFILE])[0], atol=1e-6)
    u = ds.sequences[1].user_id
    np.testing.assert_allclose(inputs.train[1], enc.encode([profile_sentence(ds.users[u])])[0], atol=1e-6)
    assert inputs.user_ids == list(ds.users) and inputs.user_ids[-1] == "nobody"
    assert inputs.vectors.shape == (len(ds.users), 16)
    assert inputs.coverage == pytest.approx(round(29 / 30, 4))
    assert inputs.fields["age"] == "number" and inputs.fields["occupation"] == "string"
    assert all(profile_sentence(g.profile) == g.sentence for g in inputs.golden)


def test_profile_artifacts_need_a_model_trained_with_profiles(tmp_path: Path) -> None:
    ds = load_dataset(generate_demo(tmp_path / "demo", DemoConfig(n_items=40, n_users=20, seed=1)))
    inputs = profile_inputs(ds, FakeEncoder(dim=8).encode)
    no_profile = SeqRecResult(spec=None, metrics={}, train_seconds=0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trained without profiles"):
        write_profile_artifacts(tmp_path / "root", inputs, no_profile)


def test_dataset_without_users_is_refused(tmp_path: Path) -> None:
    catalog = make_catalog(12)
    write_jsonl(tmp_path / "data" / "items.jsonl", catalog)
    write_jsonl(
        tmp_path / "data" / "sequences.jsonl",
        [{"user_id": f"u{u}", "items": [r["item_id"] for r in catalog[u : u + 4]]} for u in range(6)],
    )
    with pytest.raises(ValueError, match=r"no users\.jsonl"):
        profile_inputs(load_dataset(tmp_path / "data"), FakeEncoder(dim=8).encode)
    cfg = BuildConfig(data=str(tmp_path / "data"), out=str(tmp_path / "out"), seqrec=SeqRecConfig(use_profile=True))
    with pytest.raises(ValueError, match=r"use_profile is set but .* has no users\.jsonl"):
        build(cfg)  # refused at the first stage, before any export or training
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
