from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from service.core.seqrec import fuse_item_vectors, impute_id_embeddings, load_item_norm, load_text_projection
from training.models.seqrec import SeqRec

N, T, D = 30, 24, 8


def _model(use_id: bool = True, use_text: bool = True) -> tuple[SeqRec, np.ndarray]:
    torch.manual_seed(0)
    text = np.random.default_rng(0).normal(size=(N, T)).astype(np.float32)
    known = np.ones(N, dtype=np.float32)
    known[[2, 11]] = 0  # never trained: text part only
    model = SeqRec(
        N,
        hidden=D,
        n_layers=1,
        n_heads=2,
        max_len=5,
        dropout=0.1,
        text_vectors=text if use_text else None,
        use_id=use_id,
        use_text=use_text,
        known=known,
        id_dropout=0.3,
    )
    with torch.no_grad():  # move away from the init so bias and all weights matter
        for p in model.items.parameters():
            p.add_(torch.randn_like(p))
    return model, text


def _exported(model: SeqRec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What train_seqrec writes: id rows (known-masked), W [T, D], b [D]."""
    ids = model.items.id_table().detach().numpy() if model.items.use_id else np.zeros((N, D), np.float32)
    if model.items.proj is not None:
        w = model.items.proj.weight.detach().numpy().T
        b = model.items.proj.bias.detach().numpy()
    else:
        w, b = np.zeros((T, D), np.float32), np.zeros(D, np.float32)
    return ids, w, b


@pytest.mark.parametrize(("use_id", "use_text"), [(True, True), (True, False), (False, True)])
def test_fusion_equals_the_torch_item_table(use_id: bool, use_text: bool) -> None:
    model, text = _model(use_id, use_text)
    model.train()  # all_item_reps never applies ID dropout
    ref = model.all_item_reps().detach().numpy()
    ids, w, b = _exported(model)
    got = fuse_item_vectors(text, ids, w, b)
    assert got.dtype == np.float32 and got.shape == (N, D)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


def test_fusion_parts_alone() -> None:
    model, text = _model()
    ids, w, b = _exported(model)
    text_part = model.items.text_table().detach().numpy()
    np.testing.assert_allclose(fuse_item_vectors(text, None, w, b), text_part, atol=1e-5)
    np.testing.assert_array_equal(fuse_item_vectors(None, ids, w, b), ids)
    with pytest.raises(ValueError):
        fuse_item_vectors(None, None, w, b)
    with pytest.raises(ValueError):
        fuse_item_vectors(text[:, :5], ids, w, b)  # wrong text dim
    with pytest.raises(ValueError):
        fuse_item_vectors(text[:10], ids, w, b)  # row counts differ


def test_text_projection_round_trip(tmp_path: Path) -> None:
    w = np.arange(12, dtype=np.float64).reshape(4, 3)
    b = np.ones(3)
    np.savez(tmp_path / "p.npz", W=w, b=b)
    w2, b2 = load_text_projection(tmp_path / "p.npz")
    assert w2.dtype == np.float32 and b2.dtype == np.float32
    np.testing.assert_array_equal(w2, w)
    np.savez(tmp_path / "bad.npz", W=w, b=np.ones(4))
    with pytest.raises(ValueError):
        load_text_projection(tmp_path / "bad.npz")
    np.savez(tmp_path / "missing.npz", W=w)
    with pytest.raises(ValueError):
        load_text_projection(tmp_path / "missing.npz")


def test_item_norm_scales_rows_and_round_trips(tmp_path: Path) -> None:
    model, text = _model()
    ids, w, b = _exported(model)
    raw = fuse_item_vectors(text, ids, w, b)
    got = fuse_item_vectors(text, ids, w, b, norm=2.0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 2.0, rtol=1e-5)
    np.testing.assert_allclose(got, 2.0 * raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-5)
    with pytest.raises(ValueError):
        fuse_item_vectors(text, ids, w, b, norm=-1.0)
    np.savez(tmp_path / "old.npz", W=w, b=b)  # artifact sets written before item_norm existed
    assert load_item_norm(tmp_path / "old.npz") == 0.0
    np.savez(tmp_path / "new.npz", W=w, b=b, norm=np.float32(2.5))
    assert load_item_norm(tmp_path / "new.npz") == 2.5
    np.savez(tmp_path / "bad.npz", W=w, b=b, norm=np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        load_item_norm(tmp_path / "bad.npz")


def _refs(n: int = 40, t: int = 6, d: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.normal(size=(n, t)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32)


def test_imputed_id_with_one_neighbour_is_the_most_similar_items_row() -> None:
    ref_text, ref_ids = _refs()
    # new items: slightly perturbed copies of reference items 3, 17 and 29 (scaled: cosine, not dot)
    new = ref_text[[3, 17, 29]] * np.array([[2.0], [0.5], [1.0]], np.float32) + 0.01
    got = impute_id_embeddings(new, ref_text, ref_ids, k=1, temperature=0.1)
    assert got.dtype == np.float32 and got.shape == (3, 4)
    np.testing.assert_allclose(got, ref_ids[[3, 17, 29]], atol=1e-6)


def test_imputed_id_weights_neighbours_by_softmax_of_cosine() -> None:
    ref_text, ref_ids = _refs()
    new = np.random.default_rng(2).normal(size=(5, 6)).astype(np.float32)
    k, temp = 7, 0.2
    got = impute_id_embeddings(new, ref_text, ref_ids, k=k, temperature=temp, chunk=2)  # chunks of 2 rows
    unit = ref_text / np.linalg.norm(ref_text, axis=1, keepdims=True)
    for i, q in enumerate(new):
        sims = unit @ (q / np.linalg.norm(q))
        top = np.argsort(-sims)[:k]
        w = np.exp(sims[top] / temp)
        np.testing.assert_allclose(got[i], (w / w.sum()) @ ref_ids[top], atol=1e-5)
    # every neighbour with a huge temperature: the plain mean of the reference rows
    flat = impute_id_embeddings(new, ref_text, ref_ids, k=10**6, temperature=1e6)
    np.testing.assert_allclose(flat, np.broadcast_to(ref_ids.mean(axis=0), flat.shape), atol=1e-5)


def test_imputation_rejects_bad_arguments() -> None:
    ref_text, ref_ids = _refs()
    with pytest.raises(ValueError, match="k must be"):
        impute_id_embeddings(ref_text[:2], ref_text, ref_ids, k=0, temperature=0.1)
    with pytest.raises(ValueError, match="temperature"):
        impute_id_embeddings(ref_text[:2], ref_text, ref_ids, k=3, temperature=0.0)
    with pytest.raises(ValueError, match="reference text vectors"):
        impute_id_embeddings(ref_text[:2], ref_text, ref_ids[:5], k=3, temperature=0.1)
    with pytest.raises(ValueError, match="text_vectors must be"):
        impute_id_embeddings(ref_text[:2, :3], ref_text, ref_ids, k=3, temperature=0.1)
    empty = impute_id_embeddings(ref_text[:2], ref_text[:0], ref_ids[:0], k=3, temperature=0.1)
    np.testing.assert_array_equal(empty, np.zeros((2, 4), np.float32))
