from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from service.core.manifest import SeqRecSpec
from service.core.seqrec import ColdIdRule
from service.recommender.dense import SeqRecRuntime
from training.models.seqrec import SeqRec
from training.seqrec.export import export_user_tower
from training.seqrec.model import with_cold_ids

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


def test_cold_items_borrow_id_rows_as_training_scores_them(tmp_path: Path) -> None:
    """Untrained rows and new items get scale x the ID rows of their nearest trained items by text:
    the runtime's vectors equal the torch model that evaluation scores (``with_cold_ids``)."""
    torch.manual_seed(1)
    text = np.random.default_rng(2).normal(size=(N, T)).astype(np.float32)
    known = np.ones(N, dtype=np.float32)
    known[[3, 9, 20]] = 0  # never in a training sequence: zero rows in the export
    model = SeqRec(
        N, hidden=D, n_layers=1, n_heads=2, max_len=MAX_LEN, dropout=0.0, text_vectors=text, known=known
    ).eval()
    rule = ColdIdRule(k=2, temperature=0.1, scale=0.75)
    (tmp_path / "seqrec").mkdir()
    export_user_tower(model, tmp_path / "seqrec" / "user_tower.onnx")
    ids = model.items.id_table().detach().numpy()
    assert not ids[[3, 9, 20]].any()
    np.save(tmp_path / "seqrec" / "id_embeddings.npy", ids)
    assert model.items.proj is not None
    w, b = model.items.proj.weight.detach().numpy().T, model.items.proj.bias.detach().numpy()
    np.savez(tmp_path / "seqrec" / "text_projection.npz", W=w, b=b)
    spec = SeqRecSpec(
        dim=D,
        max_len=MAX_LEN,
        user_tower="seqrec/user_tower.onnx",
        id_embeddings="seqrec/id_embeddings.npy",
        text_projection="seqrec/text_projection.npz",
        cold_id_k=rule.k,
        cold_id_temperature=rule.temperature,
        cold_id_scale=rule.scale,
    )
    runtime = SeqRecRuntime.from_manifest(tmp_path, spec, device="cpu", threads=1)
    with pytest.raises(RuntimeError, match="set_reference"):
        runtime.item_vectors(text[:2], np.zeros(2, dtype=bool))  # new items before any reference
    runtime.set_reference(text)
    served = with_cold_ids(model, rule)
    expected = served.all_item_reps().detach().numpy()
    got = runtime.item_vectors(text)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    text_only = text @ w + b
    assert not np.allclose(got[[3, 9, 20]], text_only[[3, 9, 20]], atol=1e-3)  # they did borrow a row
    np.testing.assert_allclose(got[0], (ids[0] + text_only[0]), atol=1e-5)  # trained rows untouched
    # A new item whose text is a copy of a cold artifact item's gets that item's vector.
    new = runtime.item_vectors(text[[9, 0]], np.zeros(2, dtype=bool))
    np.testing.assert_allclose(new[0], got[9], atol=1e-5)
    # ... and of a trained item's: it borrows mostly that item's own ID row.
    near = ids[0] + text_only[0]
    assert np.linalg.norm(new[1] - near) < np.linalg.norm(text_only[0] - near)
    # rule off (old manifests): the text part alone
    off = SeqRecRuntime.from_manifest(tmp_path, SeqRecSpec(**{**spec.__dict__, "cold_id_k": 0}), device="cpu")
    np.testing.assert_allclose(off.item_vectors(text)[[3, 9, 20]], text_only[[3, 9, 20]], atol=1e-5)
    with pytest.raises(ValueError, match="reference text vectors"):
        runtime.set_reference(text[:5])
    with pytest.raises(ValueError, match="cold ID scale"):
        SeqRecRuntime.from_manifest(tmp_path, SeqRecSpec(**{**spec.__dict__, "cold_id_scale": -1.0}), device="cpu")
