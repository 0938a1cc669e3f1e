"""A model trained with user profiles scores the same in the service (numpy + ONNX) as in torch.

Service path: the profile dict is validated and verbalised (``ProfileRuntime``), the sentence is
embedded by the encoder, projected in numpy and added to the item vectors fed to the exported ONNX
user tower. Torch path: ``SeqRec.score(..., profile=...)`` with the vector the build trained with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from service.core.items import item_text
from service.encoding.fake import FakeEncoder
from service.recommender.dense import SeqRecRuntime
from service.recommender.profiles import ProfileRuntime
from training.checkpoint import BEST_NAME, load_weights
from training.config import DemoConfig, SeqRecConfig
from training.data.demo import generate_demo
from training.data.loader import load_dataset
from training.data.split import leave_one_out, train_item_counts
from training.encoder.profile_vectors import profile_inputs
from training.loop import history_tensors
from training.pipeline.stages import write_profile_artifacts
from training.seqrec.export import ID_EMBEDDINGS, TEXT_PROJECTION, USER_TOWER
from training.seqrec.model import build_model
from training.seqrec.train import train_seqrec

T = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_service_profile_path_matches_torch_scores(tmp_path: Path) -> None:
    ds = load_dataset(generate_demo(tmp_path / "data", DemoConfig(n_items=60, n_users=150, seed=5)))
    assert ds.users is not None
    split = leave_one_out(ds)
    encoder = FakeEncoder(dim=T)
    text = encoder.encode([item_text(it) for it in ds.items]).astype(np.float32)  # [N, T]
    profiles = profile_inputs(ds, encoder.encode)
    cfg = SeqRecConfig(
        hidden=16, n_layers=1, n_heads=2, max_len=10, dropout=0.1, batch_size=32, epochs=2, use_profile=True
    )
    root = tmp_path / "art"
    seq = train_seqrec(split, text, cfg, root / "seqrec", resume=False, progress=False, profiles=profiles.train)
    assert seq.profile_projection == "seqrec/profile_projection.npz"
    spec = write_profile_artifacts(root, profiles, seq)

    # torch: the trained weights, back in a fresh model
    known = (train_item_counts(split) > 0).astype(np.float32)
    model = build_model(cfg, split.n_items, text, known, profile_dim=profiles.dim)
    weights, _ = load_weights(root / "seqrec" / BEST_NAME)
    model.load_state_dict(weights)
    model.eval()
    assert model.profile_proj is not None and float(model.profile_proj.weight.detach().abs().max()) > 0

    # service: numpy fusion + projection, ONNX tower
    with np.load(root / "seqrec" / TEXT_PROJECTION) as z:
        w, b = z["W"], z["b"]
    runtime = SeqRecRuntime(
        root / "seqrec" / USER_TOWER, np.load(root / "seqrec" / ID_EMBEDDINGS), w, b, max_len=cfg.max_len, device="cpu"
    )
    prof = ProfileRuntime.from_manifest(root, spec)
    items = runtime.item_vectors(text)  # [N, D]

    cases = split.test[:24]
    users = [ds.sequences[c.user].user_id for c in cases]
    sentences = [prof.sentence(ds.users[u]) for u in users]
    offsets = np.stack([prof.offset(v) for v in encoder.encode(sentences)])  # [B, D]
    got = runtime.user_vectors([items[list(c.history)] for c in cases], offsets) @ items.T  # [B, N]
    with torch.no_grad():
        ids, mask = history_tensors([list(c.history) for c in cases], cfg.max_len)
        p = torch.from_numpy(profiles.train[[c.user for c in cases]])  # [B, P]
        ref = model.score(ids, mask, profile=p).numpy()  # [B, N]
        # the default (mean) profile a request without one gets
        mean = torch.from_numpy(profiles.train.mean(axis=0)).expand(len(cases), -1)  # [B, P]
        ref_default = model.score(ids, mask, profile=mean).numpy()
    assert got.shape == ref.shape == (len(cases), split.n_items)
    assert np.abs(got - ref).max() <= 1e-4
    default = runtime.user_vectors(
        [items[list(c.history)] for c in cases], np.broadcast_to(prof.default_offset, offsets.shape)
    )
    assert np.abs(default @ items.T - ref_default).max() <= 1e-4
    # the profile matters: without it (the mean profile) the scores differ
    assert np.abs(ref - ref_default).max() > 1e-3
    # the stored vector of a known user is the one its training row had
    np.testing.assert_allclose(prof.user_offset(users[0]), offsets[0], atol=1e-5)  # type: ignore[arg-type]
