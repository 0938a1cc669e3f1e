"""RQ-VAE modules and the semantic-ID job on small synthetic vectors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from service.core.sid import SidCodec, SidSpec, load_semantic_ids
from training.config import SemanticIdConfig
from training.models.rqvae import RQVAE, ResidualQuantizer, init_centroids
from training.semantic_ids.build import build_semantic_ids, codec_from_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def clustered_vectors(n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim))
    x = centers[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_init_centroids_finds_separated_clusters_and_covers_few_points() -> None:
    g = torch.Generator().manual_seed(0)
    pts = torch.cat([torch.randn(50, 2) * 0.05 + c for c in (torch.tensor([5.0, 0]), torch.tensor([-5.0, 0]))])
    cents, codes = init_centroids(pts, 2, generator=g)
    assert cents.dtype == pts.dtype and sorted(round(float(c[0])) for c in cents) == [-5, 5]
    assert codes.tolist() == torch.cdist(pts, cents).argmin(1).tolist()  # each point's nearest codeword
    few, few_codes = init_centroids(pts[:3], 8, generator=g)  # fewer points than codes
    assert few.shape == (8, 2) and len({tuple(r) for r in few.tolist()}) == 8 and few_codes.shape == (3,)


def test_quantizer_straight_through_and_dead_code_reset() -> None:
    q = ResidualQuantizer(2, 8, 4)
    z = torch.randn(32, 4, requires_grad=True)
    q.init_kmeans(z.detach(), generator=torch.Generator().manual_seed(0))
    out = q(z)
    assert out.codes.shape == (32, 2)
    (out.quantized.sum() + out.loss).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    # make code 7 of level 0 unreachable, count usage, reset it
    q.codebooks[0].data[7] = 1e6
    q.usage.zero_()
    q(z.detach())
    resets = q.reset_dead_codes(z.detach(), generator=torch.Generator().manual_seed(1))
    assert resets[0] >= 1
    assert float(q.codebooks[0].data[7].abs().max()) < 1e3


def test_numpy_codec_matches_torch_model() -> None:
    model = RQVAE(16, [12], 4, n_levels=3, codebook_size=8).eval()
    x = torch.from_numpy(clustered_vectors(64, 16, 5))
    model.quantizer.init_kmeans(model.encoder(x).detach(), generator=torch.Generator().manual_seed(0))
    codec = codec_from_model(model)
    assert isinstance(codec, SidCodec)
    assert codec.encode(x.numpy()).tolist() == model.encode(x).tolist()


def test_job_writes_unique_ids_and_new_items_get_stable_ids(tmp_path: Path) -> None:
    vecs = clustered_vectors(300, 24, 12)
    cfg = SemanticIdConfig(
        n_levels=2, codebook_size=16, hidden=[32], latent_dim=8, epochs=15, batch_size=128, reset_every=5
    )
    res = build_semantic_ids(vecs, cfg, tmp_path)
    assert len({tuple(r) for r in res.table.sids.tolist()}) == 300
    assert res.torch_codec_agreement == 1.0
    assert 0.0 < res.spec.unique_prefix_share <= 1.0
    assert res.spec.codebook_usage is not None and all(u > 0.5 for u in res.spec.codebook_usage)
    _spec, table, codec = load_semantic_ids(tmp_path, res.spec.to_dict())
    assert table.sids.tolist() == res.table.sids.tolist()
    # re-embedding an unchanged item gives its stored codes (up to the balanced last level)
    assert codec.encode(vecs).tolist() == nearest_codes(vecs, tmp_path).tolist()
    assert (codec.encode(vecs)[:, :-1] == table.sids[:, :-2]).all()
    new = clustered_vectors(5, 24, 12, seed=9)
    grown = table.extend(codec.encode(new))
    assert grown.sids[:300].tolist() == table.sids.tolist()
    assert len({tuple(r) for r in grown.sids.tolist()}) == 305


def nearest_codes(vecs: np.ndarray, root: Path) -> np.ndarray:
    return SidCodec.load(root / "semantic_ids" / "codec.npz").encode(vecs)


def test_balanced_last_level_separates_groups(tmp_path: Path) -> None:
    vecs = clustered_vectors(300, 24, 12)
    base = SemanticIdConfig(n_levels=2, codebook_size=16, hidden=[32], latent_dim=8, epochs=15, batch_size=128)
    plain = build_semantic_ids(vecs, replace(base, balance_last_level=False), tmp_path / "a")
    balanced = build_semantic_ids(vecs, replace(base, balance_last_level=True), tmp_path / "b")
    assert plain.table.sids[:, :-1].tolist() == plain.codec.encode(vecs).tolist()
    # same model (seeded): first levels equal, last level distinct inside groups where the codebook allows
    assert (balanced.table.sids[:, 0] == plain.table.sids[:, 0]).all()
    assert balanced.spec.unique_prefix_share >= plain.spec.unique_prefix_share
    for c0 in np.unique(balanced.table.sids[:, 0]):
        last = balanced.table.sids[balanced.table.sids[:, 0] == c0, 1]
        if len(last) <= 16:  # a group that fits the codebook gets distinct last codes
            assert len(set(last.tolist())) == len(last)
    assert balanced.spec.balanced_last_level and not plain.spec.balanced_last_level


def test_collaborative_part_is_coded_after_the_text(tmp_path: Path) -> None:
    vecs = clustered_vectors(300, 24, 12)
    rng = np.random.default_rng(1)
    seqs = [rng.choice(300, 8, replace=False).tolist() for _ in range(200)]
    cfg = SemanticIdConfig(
        n_levels=2, codebook_size=16, hidden=[32], latent_dim=8, epochs=10, batch_size=128, cf_dim=6, cf_weight=0.5
    )
    with pytest.raises(ValueError, match="training sequences"):
        build_semantic_ids(vecs, cfg, tmp_path)
    res = build_semantic_ids(vecs, cfg, tmp_path, seqs)
    assert res.codec.in_dim == 24 + 6 and res.spec.cf_dim == 6
    assert len({tuple(r) for r in res.table.sids.tolist()}) == 300
    spec, _, codec = load_semantic_ids(tmp_path, res.spec.to_dict())
    assert spec.cf_dim == 6
    # items known by text alone (new items) are coded with a zero collaborative part
    padded = spec.codec_input(vecs[:5])
    assert padded.shape == (5, 30) and not padded[:, 24:].any()
    assert codec.encode(padded).shape == (5, 2)
    assert SidSpec(2, 16, 4).codec_input(vecs[:5]).shape == (5, 24)  # text-only spec: unchanged
