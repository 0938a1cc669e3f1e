"""RQ-VAE over frozen item text vectors (modules only; training in training/semantic_ids/build.py).

encoder MLP (text vector -> latent) -> residual quantizer (``n_levels`` codebooks,
each quantising what the previous levels left) -> decoder MLP (quantised latent ->
text vector). Loss = reconstruction MSE + per level codebook loss
``||sg[r] - e||²`` + ``beta * ||r - sg[e]||²`` (commitment); the straight-through
estimator passes decoder gradients to the encoder. Codebooks are initialised by
k-means (the project's one, ``training/models/kmeans.py``) on the first batches' residuals,
and codes unused over an epoch are reset to random residuals of recent batches (dead-code
handling).
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch
from torch import Tensor, nn

from training.models.kmeans import kmeans


def mlp(dims: list[int], dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def init_centroids(x: Tensor, k: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``k`` starting codewords for the points ``x`` [M, E] -> (centroids [k, E], code of each point [M]).

    The project's one k-means (:func:`training.models.kmeans.kmeans`, numpy, seeded from
    ``generator``); with fewer points than codes, the points repeated with a little noise."""
    m = x.shape[0]
    if m < k:
        reps = (k + m - 1) // m
        centroids = x.repeat(reps, 1)[:k] + 1e-3 * torch.randn(k, x.shape[1], generator=generator, device=x.device)
        return centroids, torch.cdist(x, centroids).argmin(1)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    cents, labels = kmeans(x.detach().cpu().numpy(), k, seed=seed)  # [k, E], [M]
    return torch.from_numpy(cents).to(x), torch.from_numpy(labels).to(x.device)


class QuantizeOut(NamedTuple):
    quantized: Tensor  # [B, E] sum of chosen codewords (straight-through to the input)
    codes: Tensor  # [B, L] long
    loss: Tensor  # scalar: codebook + commitment losses summed over levels


class ResidualQuantizer(nn.Module):
    initialized: Tensor  # bool scalar buffer
    usage: Tensor  # [L, K] buffer: code counts since the last dead-code check

    def __init__(self, n_levels: int, codebook_size: int, dim: int, beta: float = 0.25) -> None:
        super().__init__()
        self.n_levels = n_levels
        self.codebook_size = codebook_size
        self.beta = beta
        self.codebooks = nn.ParameterList(
            [nn.Parameter(torch.randn(codebook_size, dim) * 0.1) for _ in range(n_levels)]
        )
        self.register_buffer("initialized", torch.tensor(False))
        # Per level: how often each code was chosen since the last reset check.
        self.register_buffer("usage", torch.zeros(n_levels, codebook_size))

    @torch.no_grad()
    def init_kmeans(self, z: Tensor, generator: torch.Generator | None = None) -> None:
        """Initialise every level by k-means on the residuals of ``z`` [M, E]."""
        residual = z.detach()
        for cb in self.codebooks:
            centroids, codes = init_centroids(residual, self.codebook_size, generator)  # [K, E], [M]
            cb.data.copy_(centroids)
            residual = residual - centroids[codes]
        self.initialized.fill_(True)

    @staticmethod
    def nearest(residual: Tensor, cb: Tensor) -> Tensor:
        """residual [B, E], codebook [K, E] -> code [B] (squared L2)."""
        d = (residual**2).sum(1, keepdim=True) - 2.0 * residual @ cb.T + (cb**2).sum(1)[None, :]  # [B, K]
        return d.argmin(1)

    def forward(self, z: Tensor) -> QuantizeOut:
        residual = z  # [B, E]
        quantized = torch.zeros_like(z)
        codes: list[Tensor] = []
        loss = z.new_zeros(())
        for level, cb in enumerate(self.codebooks):
            c = self.nearest(residual.detach(), cb)  # [B]
            e = cb[c]  # [B, E]
            loss = loss + ((residual.detach() - e) ** 2).mean() + self.beta * ((residual - e.detach()) ** 2).mean()
            quantized = quantized + e
            residual = residual - e.detach()
            codes.append(c)
            if self.training:
                self.usage[level] += torch.bincount(c, minlength=self.codebook_size).to(self.usage.dtype)
        st = z + (quantized - z).detach()  # straight-through: forward = quantized, gradient -> z
        return QuantizeOut(st, torch.stack(codes, dim=1), loss)

    @torch.no_grad()
    def reset_dead_codes(self, z: Tensor, generator: torch.Generator | None = None) -> list[int]:
        """Move codes unused since the last call onto random residuals of ``z`` [M, E]; -> resets per level."""
        resets: list[int] = []
        residual = z.detach()
        for level, cb in enumerate(self.codebooks):
            dead = torch.nonzero(self.usage[level] == 0).squeeze(1)  # [D]
            if len(dead):
                pick = torch.randint(0, residual.shape[0], (len(dead),), generator=generator).to(z.device)
                cb.data[dead] = residual[pick] + 1e-4 * torch.randn(len(dead), cb.shape[1], generator=generator).to(
                    z.device
                )
            resets.append(len(dead))
            residual = residual - cb[self.nearest(residual, cb)]
        self.usage.zero_()
        return resets


class RQVAEOut(NamedTuple):
    recon: Tensor  # [B, T]
    codes: Tensor  # [B, L]
    loss: Tensor  # scalar total
    recon_loss: Tensor
    quant_loss: Tensor


class RQVAE(nn.Module):
    def __init__(
        self,
        in_dim: int,
        hidden: list[int],
        latent_dim: int,
        n_levels: int,
        codebook_size: int,
        beta: float = 0.25,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoder = mlp([in_dim, *hidden, latent_dim], dropout)
        self.decoder = mlp([latent_dim, *reversed(hidden), in_dim], dropout)
        self.quantizer = ResidualQuantizer(n_levels, codebook_size, latent_dim, beta)

    def forward(self, x: Tensor) -> RQVAEOut:
        z = self.encoder(x)  # [B, E]
        q = self.quantizer(z)
        recon = self.decoder(q.quantized)  # [B, T]
        recon_loss = ((recon - x) ** 2).sum(1).mean()
        return RQVAEOut(recon, q.codes, recon_loss + q.loss, recon_loss, q.loss)

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """x [B, T] -> codes [B, L] (eval mode arithmetic, no usage counting)."""
        was = self.training
        self.eval()
        codes = self.quantizer(self.encoder(x)).codes
        self.train(was)
        return codes

    def linear_layers(self) -> list[nn.Linear]:
        return [m for m in self.encoder if isinstance(m, nn.Linear)]
