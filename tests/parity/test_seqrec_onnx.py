"""The exported user tower, run through the serving runtime, equals torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from service.core.seqrec import fuse_item_vectors
from service.recommender.dense import SeqRecRuntime
from training.jobs.train_seqrec import export_user_tower
from training.loop import history_tensors
from training.models.seqrec import SeqRec

N, T, D, MAX_LEN = 200, 32, 32, 20


@pytest.mark.parametrize("item_norm", [0.0, 3.0])
def test_onnx_user_tower_matches_torch_through_the_runtime(tmp_path: Path, item_norm: float) -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    text = rng.normal(size=(N, T)).astype(np.float32)
    known = (rng.random(N) > 0.1).astype(np.float32)
    model = SeqRec(
        N,
        hidden=D,
        n_layers=2,
        n_heads=2,
        max_len=MAX_LEN,
        dropout=0.2,
        text_vectors=text,
        known=known,
        id_dropout=0.2,
        item_norm=item_norm,
    )
    with torch.no_grad():  # weights away from their init so every part matters
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    model.eval()
    assert model.items.proj is not None
    w = model.items.proj.weight.detach().numpy().T
    b = model.items.proj.bias.detach().numpy()
    ids_np = model.items.id_table().detach().numpy()
    export_user_tower(model, tmp_path / "user_tower.onnx")
    runtime = SeqRecRuntime(
        tmp_path / "user_tower.onnx", ids_np, w, b, max_len=MAX_LEN, device="cpu", item_norm=item_norm
    )

    items = runtime.item_vectors(text)  # [N, D]
    np.testing.assert_allclose(items, fuse_item_vectors(text, ids_np, w, b, item_norm))
    if item_norm > 0:  # trained and untrained (text-only) items alike on one scale
        np.testing.assert_allclose(np.linalg.norm(items, axis=1), item_norm, rtol=1e-5)
    np.testing.assert_allclose(items, model.all_item_reps().detach().numpy(), atol=1e-5)

    lengths = [1, 2, 3, 7, MAX_LEN - 1, MAX_LEN, MAX_LEN + 9, 13, 1, 40]
    histories = [rng.integers(0, N, size=k) for k in lengths]
    got = runtime.user_vectors([items[h] for h in histories])  # [B, D]
    with torch.no_grad():
        ids, mask = history_tensors([h.tolist() for h in histories], MAX_LEN)
        ref = model.tower.last_state(model.all_item_reps()[ids], mask).numpy()  # [B, D]
    assert got.shape == ref.shape == (len(lengths), D)
    assert np.abs(got - ref).max() <= 1e-4
    # Scores rank items the same way.
    np.testing.assert_allclose(got @ items.T, ref @ items.T, atol=1e-3)
