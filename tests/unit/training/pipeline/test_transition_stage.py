"""The build's transition-prior stage: weight picked on validation with the trained seqrec model, counted
over every interaction (or the training sequences only), saved where the manifest section says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.core.manifest import TransitionSpec
from service.core.transitions import PriorShape, TransitionPrior
from tests.unit.training.genrec.splits import cyclic_split
from training.config import BuildConfig, SeqRecConfig
from training.data.split import Split, all_sequences
from training.pipeline.stages import transition_stage
from training.seqrec.train import SeqRecResult, train_seqrec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_ITEMS, TEXT_DIM = 40, 12


def tiny_build(root: Path) -> tuple[BuildConfig, Split, np.ndarray, SeqRecResult]:
    """A tiny seqrec model trained as the build trains it (best weights left in root/seqrec)."""
    split = cyclic_split(n_items=N_ITEMS, n_users=80)
    vectors = np.random.default_rng(0).normal(size=(N_ITEMS, TEXT_DIM)).astype(np.float32)
    cfg = BuildConfig(
        seqrec=SeqRecConfig(
            hidden=16, n_layers=1, n_heads=1, max_len=8, dropout=0.0, batch_size=64, epochs=2, device="cpu"
        ),
        markov_weights=[0.5, 2.0],
        markov_beta=0.5,
    )
    seq = train_seqrec(split, vectors, cfg.seqrec, root / "seqrec", resume=False, progress=False)
    return cfg, split, vectors, seq


def test_transition_stage_saves_the_prior_and_the_validated_weight_and_refuses_bad_weights(tmp_path: Path) -> None:
    cfg, split, vectors, seq = tiny_build(tmp_path)
    spec, metrics = transition_stage(cfg, split, vectors, tmp_path, seq.spec.id_embeddings)
    assert spec.file == "seqrec/transitions.npz" and spec.n_items == N_ITEMS and spec.beta == 0.5
    assert spec.weight in cfg.markov_weights and set(spec.val_by_weight) == {"0.5", "2"}
    assert spec.val_by_weight[f"{spec.weight:g}"] == max(spec.val_by_weight.values())
    assert metrics["weight"] == spec.weight and "ndcg@10" in metrics["test"]
    # On a cyclic walk the next item is the last + 1: the prior makes validation near perfect.
    assert metrics["val"]["recall@10"] > 0.9
    # served: every interaction counted (the validation and test items too); "train": the training sequences
    saved = TransitionPrior.load(tmp_path / spec.file)
    ref = TransitionPrior.from_sequences(all_sequences(split), N_ITEMS, 0.5)
    np.testing.assert_array_equal(saved.log_prob([0, 5]), ref.log_prob([0, 5]))
    assert TransitionSpec.from_dict(spec.to_dict()) == spec
    assert sum(map(len, all_sequences(split))) == sum(map(len, split.train)) + 2 * len(split.test)
    cfg.markov_counts = "train"
    spec, _ = transition_stage(cfg, split, vectors, tmp_path, seq.spec.id_embeddings)
    saved = TransitionPrior.load(tmp_path / spec.file)
    ref = TransitionPrior.from_sequences(split.train, N_ITEMS, 0.5)
    np.testing.assert_array_equal(saved.log_prob([0, 5]), ref.log_prob([0, 5]))
    cfg.markov_counts = "everything"
    with pytest.raises(ValueError, match="markov_counts"):
        transition_stage(cfg, split, vectors, tmp_path, seq.spec.id_embeddings)
    cfg.markov_counts = "all"

    # a wider prior: its shape is saved with the counts and recorded in the manifest section
    cfg.markov_shapes = [{"window": 3, "decay": 0.5, "backward": 0.5, "last": 2, "last_decay": 0.5}]
    spec, _ = transition_stage(cfg, split, vectors, tmp_path, seq.spec.id_embeddings)
    wide = TransitionPrior.load(tmp_path / spec.file)
    assert wide.shape == PriorShape.from_dict(cfg.markov_shapes[0]) == PriorShape.from_dict(spec.shape)
    assert TransitionSpec.from_dict(spec.to_dict()).shape == spec.shape
    cfg.markov_shapes = [{"windows": 3}]
    with pytest.raises(ValueError, match="unknown prior shape key"):
        transition_stage(cfg, split, vectors, tmp_path, seq.spec.id_embeddings)
    cfg.markov_shapes = [{}]

    cfg.markov_weights = [0.0]
    with pytest.raises(ValueError, match="markov weights"):
        transition_stage(cfg, split, vectors, tmp_path, seq.spec.id_embeddings)
