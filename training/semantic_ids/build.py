"""Semantic IDs for a catalog: train the RQ-VAE on its frozen text vectors, assign
codes + collision digits, and write ``semantic_ids/{sids.npy,codec.npz}``.

With ``cf_dim`` > 0 the RQ-VAE codes each text vector followed by a collaborative vector
(:mod:`training.semantic_ids.cf_vectors`, from the training sequences); items coded later by the
service (new items) have no interactions and get zeros there (``SidSpec.codec_input``).

The written codes are those of the numpy :class:`service.core.sid.SidCodec` (the
arithmetic the service uses for new items), so training and serving agree by
construction; the job logs how many items the torch model codes differently
(float rounding at near-ties only).

    python -m training.jobs.semantic_ids --vectors items/text_vectors.npy --out DIR   (the job over this library)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from service.core.sid import CODEC_FILE, SIDS_FILE, SidCodec, SidLayout, SidSpec, SidTable
from training.config import SemanticIdConfig
from training.loop import resolve_device, seed_everything
from training.models.rqvae import RQVAE
from training.semantic_ids.cf_vectors import cooccurrence_vectors

logger = logging.getLogger(__name__)


@dataclass
class SemanticIdResult:
    spec: SidSpec
    table: SidTable
    codec: SidCodec
    train_seconds: float
    final_recon_loss: float
    torch_codec_agreement: float  # share of items the torch model and the numpy codec code identically
    inputs: np.ndarray  # [N, F] what the RQ-VAE coded (codec_inputs): text vectors (+ co-occurrence part)


def codec_from_model(model: RQVAE) -> SidCodec:
    weights = [
        (lin.weight.detach().cpu().numpy().T.copy(), lin.bias.detach().cpu().numpy().copy())
        for lin in model.linear_layers()
    ]  # numpy layout: h @ w + b, w [in, out]
    codebooks = [cb.detach().cpu().numpy().copy() for cb in model.quantizer.codebooks]
    return SidCodec(weights, codebooks)


def train_rqvae(vectors: np.ndarray, cfg: SemanticIdConfig) -> tuple[RQVAE, float, float]:
    """Train the RQ-VAE on ``vectors`` [N, T]. -> (model in eval mode, seconds, final reconstruction loss)"""
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError(f"text vectors must be a non-empty [N, T] matrix, got {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("text vectors contain NaN or inf")
    seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    previous_threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        x_all = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(device)  # [N, T]
        n = len(x_all)
        model = RQVAE(
            x_all.shape[1], list(cfg.hidden), cfg.latent_dim, cfg.n_levels, cfg.codebook_size, cfg.beta, cfg.dropout
        ).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        bs = min(cfg.batch_size, n)
        steps = math.ceil(n / bs)
        t0 = time.perf_counter()
        with torch.no_grad():
            first = torch.randperm(n, generator=gen)[: bs * cfg.kmeans_init_batches].to(device)
            model.quantizer.init_kmeans(model.encoder(x_all[first]), generator=gen)
        logger.info(
            "rq-vae: k-means initialised %d levels x %d codes on %d items", cfg.n_levels, cfg.codebook_size, len(first)
        )
        last_resets: list[int] = []
        recon = float("nan")
        bar = tqdm(range(1, cfg.epochs + 1), desc="rq-vae", leave=False)
        for epoch in bar:
            model.train()
            order = torch.randperm(n, generator=gen).to(device)
            tot, tot_rec = 0.0, 0.0
            for s in range(steps):
                xb = x_all[order[s * bs : (s + 1) * bs]]  # [B, T]
                out = model(xb)
                opt.zero_grad(set_to_none=True)
                out.loss.backward()
                opt.step()
                tot += float(out.loss.detach())
                tot_rec += float(out.recon_loss.detach())
            recon = tot_rec / steps
            if cfg.dead_code_reset and epoch % cfg.reset_every == 0 and epoch <= cfg.stop_resets_at * cfg.epochs:
                with torch.no_grad():
                    model.eval()
                    last_resets = model.quantizer.reset_dead_codes(model.encoder(x_all), generator=gen)
            elif epoch % cfg.reset_every == 0:
                model.quantizer.usage.zero_()
            bar.set_postfix(loss=f"{tot / steps:.4f}", recon=f"{recon:.4f}")
            if epoch % max(1, cfg.epochs // 10) == 0:
                logger.info(
                    "rq-vae epoch %d: loss %.4f recon %.4f, dead codes reset %s", epoch, tot / steps, recon, last_resets
                )
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(previous_threads)
    model.eval()
    return model, seconds, recon


def _prefix_share(codes: np.ndarray) -> float:
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return float((counts[inverse.reshape(-1)] == 1).mean())


def balance_last_level(codec: SidCodec, vectors: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Re-assign the last code level so items sharing all earlier codes get distinct last codes
    where the codebook allows: inside each group, (item, code) pairs are taken greedily by
    distance of the item's last residual to the code, each item and code used once (a cheap
    stand-in for the balanced/Sinkhorn assignment of LC-Rec). Groups larger than the codebook
    keep nearest codes for the overflow; the collision digit still makes every ID unique.

    Only the stored table changes: new items are still coded by nearest codeword
    (``SidCodec.encode``) and then get a free collision digit.
    """
    out = codes.copy()
    residual = codec.latent(vectors)  # [N, E]
    for level, cb in enumerate(codec.codebooks[:-1]):
        residual = residual - cb[codes[:, level]]
    last = codec.codebooks[-1]  # [K, E]
    prefix = codes[:, :-1]
    _, inverse, counts = np.unique(prefix, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    for g in np.flatnonzero(counts > 1):
        rows = order[starts[g] : starts[g] + counts[g]]  # items of this group
        r = residual[rows]  # [M, E]
        d = (r**2).sum(1, keepdims=True) - 2.0 * r @ last.T + (last**2).sum(1)[None, :]  # [M, K]
        taken_item = np.zeros(len(rows), dtype=bool)
        taken_code = np.zeros(len(last), dtype=bool)
        for flat in np.argsort(d, axis=None, kind="stable"):
            i, c = divmod(int(flat), len(last))
            if taken_item[i] or taken_code[c]:
                continue
            out[rows[i], -1] = c
            taken_item[i] = taken_code[c] = True
            if taken_item.all() or taken_code.all():
                break
    return out


def codec_inputs(vectors: np.ndarray, cfg: SemanticIdConfig, sequences: Sequence[Sequence[int]] | None) -> np.ndarray:
    """What the RQ-VAE codes: the text vectors [N, T], followed for ``cfg.cf_dim`` > 0 by
    ``cf_weight`` x the items' co-occurrence vectors from ``sequences`` (training sequences only)."""
    if not cfg.cf_dim:
        return vectors
    if sequences is None:
        raise ValueError("cf_dim > 0 needs the training sequences (item rows) to count co-occurrence")
    cf = cooccurrence_vectors(sequences, len(vectors), cfg.cf_dim, cfg.cf_window, cfg.seed)  # [N, C]
    return np.concatenate([np.asarray(vectors, dtype=np.float32), cfg.cf_weight * cf], axis=1).astype(np.float32)


def build_semantic_ids(
    vectors: np.ndarray,
    cfg: SemanticIdConfig,
    root: Path,
    sequences: Sequence[Sequence[int]] | None = None,
) -> SemanticIdResult:
    """Train, code every item, write the table and codec under ``root``; -> the manifest spec and stats.

    ``sequences``: the training sequences (item rows), for a collaborative part (``cfg.cf_dim``)."""
    vectors = codec_inputs(vectors, cfg, sequences)
    model, seconds, recon = train_rqvae(vectors, cfg)
    codec = codec_from_model(model)
    codes = codec.encode(vectors)  # [N, L]
    with torch.no_grad():
        device = next(model.parameters()).device
        torch_codes = model.encode(torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(device))
    agreement = float((torch_codes.cpu().numpy() == codes).all(1).mean())
    nearest_share = SidTable.from_codes(
        codes, SidLayout(cfg.n_levels, cfg.codebook_size, len(codes))
    ).unique_prefix_share()
    if cfg.balance_last_level:
        codes = balance_last_level(codec, vectors, codes)
        logger.info("last level balanced: unique prefix share %.4f -> %.4f", nearest_share, _prefix_share(codes))
    # Collision digits: capacity at least the configured minimum, and room for twice today's worst case.
    _, counts = np.unique(codes, axis=0, return_counts=True)
    capacity = max(cfg.min_collision_capacity, 2 * int(counts.max()))
    layout = SidLayout(cfg.n_levels, cfg.codebook_size, capacity)
    table = SidTable.from_codes(codes, layout)
    table.save(root / SIDS_FILE)
    codec.save(root / CODEC_FILE)
    spec = SidSpec(
        n_levels=cfg.n_levels,
        codebook_size=cfg.codebook_size,
        collision_capacity=capacity,
        unique_prefix_share=round(table.unique_prefix_share(), 5),
        codebook_usage=[round(u, 4) for u in table.codebook_usage()],
        balanced_last_level=cfg.balance_last_level,
        cf_dim=cfg.cf_dim,
    )
    logger.info(
        "semantic ids: %d items, unique prefix share %.4f, codebook usage %s, max collisions %d, "
        "torch/numpy agreement %.4f, %.1fs",
        len(table),
        spec.unique_prefix_share,
        spec.codebook_usage,
        int(counts.max()),
        agreement,
        seconds,
    )
    return SemanticIdResult(spec, table, codec, seconds, recon, agreement, vectors)
