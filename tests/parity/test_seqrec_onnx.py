"""The exported user tower, run through the serving runtime, equals torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from service.core.seqrec import fuse_item_vectors
from service.recommender.dense import SeqRecRuntime
from training.loop import history_tensors
from training.models.seqrec import SeqRec
from training.seqrec.export import export_user_tower

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


@pytest.mark.slow  # trains and exports a real (tiny) model
def test_item_norm_model_served_from_its_artifacts_scores_as_torch(tmp_path: Path) -> None:
    """A model trained with item_norm, exported by train_seqrec and loaded by the runtime from its files:
    cold items (no trained ID row) included, the served item vectors and scores equal torch's."""
    from tests.unit.training.test_seqrec import _chain_split
    from training.checkpoint import BEST_NAME, load_weights
    from training.config import SeqRecConfig
    from training.data.split import Split, train_item_counts
    from training.seqrec.model import build_model, cold_id_rule, with_cold_ids
    from training.seqrec.train import train_seqrec

    n, t = 60, 12
    rng = np.random.default_rng(1)
    text = rng.normal(size=(n, t)).astype(np.float32)
    full = _chain_split(n, 200)
    cold = {7, 23, 41}
    split = Split(n_items=n, train=[[i for i in s if i not in cold] for s in full.train], val=full.val, test=full.test)
    cfg = SeqRecConfig(hidden=16, max_len=10, epochs=2, batch_size=64, max_minutes=1.0, item_norm=3.0)
    res = train_seqrec(split, text, cfg, tmp_path / "seqrec", resume=False, progress=False)
    known = (train_item_counts(split) > 0).astype(np.float32)
    assert known[sorted(cold)].sum() == 0
    model = build_model(cfg, n, text, known)
    model.load_state_dict(load_weights(tmp_path / "seqrec" / BEST_NAME)[0])
    served = with_cold_ids(model, cold_id_rule(cfg)).eval()

    runtime = SeqRecRuntime.from_manifest(tmp_path, res.spec, device="cpu")
    assert runtime.item_norm == 3.0
    items = runtime.item_vectors(text)  # [N, D]
    with torch.no_grad():
        ref_items = served.all_item_reps().numpy()
    np.testing.assert_allclose(items, ref_items, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(items[sorted(cold)], axis=1), 3.0, rtol=1e-5)
    histories = [np.array(c.history[-10:]) for c in split.test[:20]]
    got = runtime.user_vectors([items[h] for h in histories]) @ items.T  # [B, N]
    with torch.no_grad():
        ids, mask = history_tensors([h.tolist() for h in histories], 10)
        ref = served.score(ids, mask).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-3)
