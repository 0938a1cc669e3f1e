"""Item encoders over frozen text vectors that plug into :class:`training.models.seqrec.SeqRec`.

* :class:`TextAdaptorItemEncoder` (UniSRec style): ``rep(i) = MoE-whitening(text(i))``: every
  item with text can be scored, trained or not (no ID table at all).
* :class:`CodeItemEncoder` (VQ-Rec style): the text vector is product-quantized into M codes
  (``training/models/pq.py``) and ``rep(i) = sum_m E_m[code_m(i)]``: code embeddings are shared
  between items, so an item never seen in training is still represented through its codes.

The fused ID + W·text encoder stays in ``seqrec.py`` (it is the one the service mirrors in numpy).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from training.models.seqrec import INIT_STD, ItemEncoder


def _frozen(x: np.ndarray | Tensor, dtype: torch.dtype) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach().to(dtype=dtype).clone()
    return torch.from_numpy(np.ascontiguousarray(x)).to(dtype=dtype)


class WhiteningMoE(nn.Module):
    """Mixture of parametric-whitening experts: x [..., T] -> [..., D].

    Expert e computes ``(x - b_e) @ W_e`` (a learned centring and linear map: the
    parametric whitening of UniSRec); a softmax gate over ``x`` mixes the experts.
    """

    def __init__(self, in_dim: int, out_dim: int, n_experts: int, dropout: float = 0.0) -> None:
        super().__init__()
        if n_experts < 1:
            raise ValueError(f"n_experts must be >= 1, got {n_experts}")
        self.in_dim, self.out_dim, self.n_experts = in_dim, out_dim, n_experts
        self.bias = nn.Parameter(torch.zeros(n_experts, in_dim))  # [E, T]
        self.weight = nn.Parameter(torch.empty(n_experts, in_dim, out_dim))  # [E, T, D]
        nn.init.normal_(self.weight, std=INIT_STD)
        self.gate = nn.Linear(in_dim, n_experts)
        nn.init.zeros_(self.gate.weight)  # uniform mixture at the start
        nn.init.zeros_(self.gate.bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.drop(x)
        # (x - b_e) @ W_e = x @ W_e - b_e @ W_e: no [..., E, T] copy of the input.
        experts = torch.einsum("...t,etd->...ed", x, self.weight)  # [..., E, D]
        experts = experts - torch.einsum("et,etd->ed", self.bias, self.weight)  # [E, D] broadcast
        gates = torch.softmax(self.gate(x), dim=-1).unsqueeze(-1)  # [..., E, 1]
        return (gates * experts).sum(dim=-2)  # [..., D]


class TextAdaptorItemEncoder(ItemEncoder):
    """Text-only items: frozen text vectors [N, T] through a :class:`WhiteningMoE` adaptor."""

    text: Tensor

    def __init__(
        self, text_vectors: np.ndarray | Tensor, dim: int, *, n_experts: int = 4, dropout: float = 0.0
    ) -> None:
        super().__init__()
        text = _frozen(text_vectors, torch.float32)  # [N, T]
        if text.ndim != 2:
            raise ValueError(f"text_vectors must be [N, T], got {tuple(text.shape)}")
        self.n_items, self.dim = int(text.shape[0]), dim
        self.register_buffer("text", text, persistent=False)
        self.adaptor = WhiteningMoE(int(text.shape[1]), dim, n_experts, dropout)

    def table(self, *, drop_ids: bool | None = None) -> Tensor:
        return self.adaptor(self.text)  # [N, T] -> [N, D]

    def forward(self, item_ids: Tensor) -> Tensor:
        return self.adaptor(self.text[item_ids])  # [..., T] -> [..., D]


class CodeItemEncoder(ItemEncoder):
    """Code lookup: codes [N, M] in [0, K) -> sum of M code embeddings [N, D]."""

    codes: Tensor
    offsets: Tensor

    def __init__(self, codes: np.ndarray | Tensor, n_codes: int, dim: int) -> None:
        super().__init__()
        c = _frozen(codes, torch.int64)  # [N, M]
        if c.ndim != 2:
            raise ValueError(f"codes must be [N, M], got {tuple(c.shape)}")
        if c.numel() and (int(c.min()) < 0 or int(c.max()) >= n_codes):
            raise ValueError(f"codes must be in [0, {n_codes}), got [{int(c.min())}, {int(c.max())}]")
        self.n_items, self.dim = int(c.shape[0]), dim
        self.m, self.k = int(c.shape[1]), n_codes
        self.register_buffer("codes", c)  # part of the model: the serving side needs the same codes
        self.register_buffer("offsets", torch.arange(self.m, dtype=torch.int64) * n_codes, persistent=False)  # [M]
        self.code_emb = nn.Embedding(self.m * n_codes, dim)  # row m*K + k = code k of sub-space m
        # Sum of M rows: scale so the item vector starts at the usual INIT_STD.
        nn.init.normal_(self.code_emb.weight, std=INIT_STD / max(self.m, 1) ** 0.5)

    def table(self, *, drop_ids: bool | None = None) -> Tensor:
        return self.code_emb(self.codes + self.offsets).sum(dim=-2)  # [N, M, D] -> [N, D]

    def forward(self, item_ids: Tensor) -> Tensor:
        return self.code_emb(self.codes[item_ids] + self.offsets).sum(dim=-2)  # [..., M, D] -> [..., D]
