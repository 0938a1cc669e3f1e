from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from service.core.manifest import SeqRecSpec
from service.recommender.dense import SeqRecRuntime
from training.jobs.train_seqrec import export_user_tower
from training.models.seqrec import SeqRec

N, T, D, MAX_LEN = 25, 12, 8, 6


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SeqRecSpec, np.ndarray]:
    """A small real artifact set: exported tower + ID rows + projection."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("art")
    text = np.random.default_rng(0).normal(size=(N, T)).astype(np.float32)
    model = SeqRec(N, hidden=D, n_layers=1, n_heads=2, max_len=MAX_LEN, dropout=0.0, text_vectors=text).eval()
    (root / "seqrec").mkdir()
    export_user_tower(model, root / "seqrec" / "user_tower.onnx")
    np.save(root / "seqrec" / "id_embeddings.npy", model.items.id_table().detach().numpy())
    assert model.items.proj is not None
    np.savez(
        root / "seqrec" / "text_projection.npz",
        W=model.items.proj.weight.detach().numpy().T,
        b=model.items.proj.bias.detach().numpy(),
    )
    spec = SeqRecSpec(
        dim=D,
        max_len=MAX_LEN,
        user_tower="seqrec/user_tower.onnx",
        id_embeddings="seqrec/id_embeddings.npy",
        text_projection="seqrec/text_projection.npz",
    )
    return root, spec, text


@pytest.fixture(scope="module")
def runtime(artifact: tuple[Path, SeqRecSpec, np.ndarray]) -> SeqRecRuntime:
    root, spec, _ = artifact
    return SeqRecRuntime.from_manifest(root, spec, device="cpu", threads=1)


def test_dim_and_item_vectors_known_and_new(
    runtime: SeqRecRuntime, artifact: tuple[Path, SeqRecSpec, np.ndarray]
) -> None:
    _, _, text = artifact
    assert runtime.dim == D
    full = runtime.item_vectors(text)
    assert full.shape == (N, D) and full.dtype == np.float32
    text_only = text @ runtime.W + runtime.b
    # Two new items appended to the catalog, one known item marked unknown.
    extra = np.random.default_rng(1).normal(size=(2, T)).astype(np.float32)
    known = np.ones(N + 2, dtype=bool)
    known[[4, N, N + 1]] = False
    mixed = runtime.item_vectors(np.vstack([text, extra]), known)
    np.testing.assert_allclose(mixed[:4], full[:4], atol=1e-6)
    np.testing.assert_allclose(mixed[4], text_only[4], atol=1e-5)
    np.testing.assert_allclose(mixed[N:], extra @ runtime.W + runtime.b, atol=1e-5)
    with pytest.raises(ValueError):
        runtime.item_vectors(np.vstack([text, extra]))  # rows beyond the ID table need `known`
    with pytest.raises(ValueError):
        runtime.item_vectors(np.vstack([text, extra]), np.ones(N + 2, dtype=bool))


def test_user_vectors_truncate_and_batch_consistently(
    runtime: SeqRecRuntime, artifact: tuple[Path, SeqRecSpec, np.ndarray]
) -> None:
    _, _, text = artifact
    items = runtime.item_vectors(text)
    long_h = items[[1, 2, 3, 4, 5, 6, 7, 8, 9]]  # longer than max_len
    short_h = items[[3]]
    both = runtime.user_vectors([long_h, short_h])
    assert both.shape == (2, D)
    np.testing.assert_allclose(both[0], runtime.user_vectors([long_h[-MAX_LEN:]])[0], atol=1e-6)
    np.testing.assert_allclose(both[1], runtime.user_vectors([short_h])[0], atol=1e-5)  # padding-invariant
    assert not np.allclose(both[0], both[1])
    runtime.batch_size = 2  # chunking gives the same answer
    many = runtime.user_vectors([short_h, long_h, short_h, long_h, short_h])
    np.testing.assert_allclose(many[[1, 0]], both, atol=1e-5)
    assert runtime.user_vectors([]).shape == (0, D)
    with pytest.raises(ValueError, match="empty"):
        runtime.user_vectors([items[:0]])
    with pytest.raises(ValueError):
        runtime.user_vectors([text[:2]])  # wrong dim


def test_from_manifest_rejects_a_mismatched_dim(artifact: tuple[Path, SeqRecSpec, np.ndarray]) -> None:
    root, spec, _ = artifact
    bad = SeqRecSpec(**{**spec.__dict__, "dim": D + 1})
    with pytest.raises(ValueError, match="dim"):
        SeqRecRuntime.from_manifest(root, bad, device="cpu")
