"""SASRec-style sequential recommender with ID + text fusion (modules only).

The model is split in two so that serving can feed any item representations:

* :class:`FusedItemEncoder` turns item indices into vectors,
  ``rep(i) = known(i) * id_emb(i) + text_vec(i) @ W + b``. The text vectors are a
  frozen buffer; ``W, b`` is a learned projection. ``known(i)`` is 0 for items never
  seen in the training sequences: their ID rows receive no positive signal, so they
  are served through the text part alone, in training exactly as online
  (``service/core/seqrec.py`` computes the same fusion in numpy).
* :class:`UserTower` is the causal transformer over a left-padded sequence of item
  representations. It is what ``seqrec/user_tower.onnx`` holds.

Positions are counted from the most recent item backwards (the newest item has
position 0), so the state of the last item does not depend on how much left
padding a batch carries: a history gives the same user vector alone or batched
with longer ones.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

INIT_STD = 0.02
NORM_EPS = 1e-12  # as service.core.seqrec.unit_rows


def _as_tensor(x: np.ndarray | Tensor, dtype: torch.dtype) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach().to(dtype=dtype).clone()
    return torch.from_numpy(np.ascontiguousarray(x)).to(dtype=dtype)


class ItemEncoder(nn.Module):
    """Item index -> representation [D]. Every item representation plugs into :class:`SeqRec`.

    Subclasses implement :meth:`table` (all items at once, with training-time
    regularisation such as ID dropout when ``drop_ids``); :meth:`forward` gathers rows
    of the table without it. ``training/models/item_encoders.py`` holds the text-only
    (whitening + mixture of experts) and code-lookup (product quantization) encoders.
    """

    n_items: int
    dim: int

    def table(self, *, drop_ids: bool | None = None) -> Tensor:
        """Representations of all items -> [N, D]."""
        raise NotImplementedError

    def forward(self, item_ids: Tensor) -> Tensor:
        """item_ids [...] -> [..., D]"""
        return self.table(drop_ids=False)[item_ids]


class FusedItemEncoder(ItemEncoder):
    """Item index -> representation; ID embedding and/or projected frozen text vector."""

    known: Tensor
    text: Tensor

    def __init__(
        self,
        n_items: int,
        dim: int,
        text_vectors: np.ndarray | Tensor | None = None,
        *,
        use_id: bool = True,
        use_text: bool = True,
        known: np.ndarray | Tensor | None = None,
        id_dropout: float = 0.0,
        item_norm: float = 0.0,
    ) -> None:
        super().__init__()
        if not (use_id or use_text):
            raise ValueError("at least one of use_id / use_text must be true")
        if use_text and text_vectors is None:
            raise ValueError("use_text=True needs text_vectors [n_items, T]")
        if not 0.0 <= id_dropout < 1.0:
            raise ValueError(f"id_dropout must be in [0, 1), got {id_dropout}")
        if item_norm < 0.0:
            raise ValueError(f"item_norm must be >= 0 (0 = off), got {item_norm}")
        self.n_items = n_items
        self.dim = dim
        self.use_id = use_id
        self.use_text = use_text
        self.id_dropout = id_dropout
        # > 0: every fused representation is L2-normalised and scaled to this norm, so an item served
        # by its text alone (no trained ID row) lives on the same scale as a trained one.
        self.item_norm = item_norm
        self.id_emb: nn.Embedding | None = None
        self.proj: nn.Linear | None = None
        if use_id:
            self.id_emb = nn.Embedding(n_items, dim)
            nn.init.normal_(self.id_emb.weight, std=INIT_STD)
        known_t = torch.ones(n_items) if known is None else _as_tensor(known, torch.float32)
        if known_t.shape != (n_items,):
            raise ValueError(f"known must have shape [{n_items}], got {tuple(known_t.shape)}")
        self.register_buffer("known", known_t)  # [N] 1 = ID row trained
        if use_text:
            assert text_vectors is not None
            text = _as_tensor(text_vectors, torch.float32)  # [N, T]
            if text.ndim != 2 or text.shape[0] != n_items:
                raise ValueError(f"text_vectors must be [{n_items}, T], got {tuple(text.shape)}")
            # Not persistent: the vectors are an input of the job, not a learned weight,
            # and keeping them out of checkpoints keeps those small.
            self.register_buffer("text", text, persistent=False)
            self.proj = nn.Linear(text.shape[1], dim)
            nn.init.normal_(self.proj.weight, std=INIT_STD)
            nn.init.zeros_(self.proj.bias)
        else:
            self.register_buffer("text", torch.zeros(n_items, 0), persistent=False)

    @property
    def text_dim(self) -> int:
        return int(self.text.shape[1])

    def id_table(self) -> Tensor:
        """ID part of every item, zero for items never trained. -> [N, D]"""
        assert self.id_emb is not None
        return self.id_emb.weight * self.known[:, None]

    def text_table(self) -> Tensor:
        """Text part of every item. -> [N, D]"""
        assert self.proj is not None
        return self.proj(self.text)  # [N, T] @ [T, D] -> [N, D]

    def table(self, *, drop_ids: bool | None = None) -> Tensor:
        """Representations of all items -> [N, D].

        ``drop_ids`` (default: ``self.training``) zeroes the ID part of a random
        ``id_dropout`` share of items, the same items for inputs and outputs of one
        step, so the text path learns to carry an item alone (cold start).
        """
        drop = self.training if drop_ids is None else drop_ids
        out: Tensor | None = None
        if self.use_id:
            ids = self.id_table()  # [N, D]
            if drop and self.use_text and self.id_dropout > 0.0:
                keep = (torch.rand(self.n_items, device=ids.device) >= self.id_dropout).to(ids.dtype)  # [N]
                ids = ids * keep[:, None]
            out = ids
        if self.use_text:
            text = self.text_table()
            out = text if out is None else out + text
        assert out is not None
        return self._normed(out)

    def _normed(self, reps: Tensor) -> Tensor:
        """reps [..., D] -> the same scaled to norm ``item_norm`` (unchanged when it is 0)."""
        if self.item_norm <= 0.0:
            return reps
        return self.item_norm * reps / reps.norm(dim=-1, keepdim=True).clamp(min=NORM_EPS)

    def forward(self, item_ids: Tensor) -> Tensor:
        """item_ids [...] -> [..., D] (no ID dropout; training uses :meth:`table`)."""
        out: Tensor | None = None
        if self.use_id:
            assert self.id_emb is not None
            out = self.id_emb(item_ids) * self.known[item_ids].unsqueeze(-1)  # [..., D]
        if self.use_text:
            assert self.proj is not None
            text = self.proj(self.text[item_ids])  # [..., T] -> [..., D]
            out = text if out is None else out + text
        assert out is not None
        return self._normed(out)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"hidden {dim} is not divisible by n_heads {n_heads}")
        self.dim = dim
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.attn_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        """x [B, L, D]; allowed [B, 1, L, L] bool (query i may read key j) -> [B, L, D]"""
        b, length = x.shape[0], x.shape[1]
        q, k, v = self.qkv(x).split(self.dim, dim=-1)  # 3 x [B, L, D]
        q = q.view(b, length, self.n_heads, self.head_dim).transpose(1, 2)  # [B, H, L, Dh]
        k = k.view(b, length, self.n_heads, self.head_dim).transpose(1, 2)
        v = v.view(b, length, self.n_heads, self.head_dim).transpose(1, 2)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # [B, H, L, L]
        # Every row allows at least its diagonal, so no row is all -inf (which would be NaN).
        scores = scores.masked_fill(~allowed, float("-inf"))
        probs = self.attn_dropout(torch.softmax(scores, dim=-1))
        y = probs @ v  # [B, H, L, Dh]
        y = y.transpose(1, 2).reshape(b, length, self.dim)  # [B, L, D]
        return self.out(y)


class Block(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, dim: int, n_heads: int, dropout: float, ffn_mult: int = 4) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, n_heads, dropout)
        self.ln2 = nn.LayerNorm(dim)
        # No dropout inside the FFN (as in nanoGPT): the residual dropout below regularises it, and
        # sampling a mask over the [B, L, 4D] hidden is a visible share of a CPU step.
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Linear(ffn_mult * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.ln1(x), allowed))  # [B, L, D]
        return x + self.drop(self.ffn(self.ln2(x)))


def attention_mask(mask: Tensor) -> Tensor:
    """Key-padding + causal mask. mask [B, L] (nonzero = real item) -> allowed [B, 1, L, L].

    Query i reads key j when j <= i and j is a real item; every query also reads
    itself, so padded rows stay finite (an all-masked softmax row is NaN).
    """
    length = mask.shape[1]
    idx = torch.arange(length, device=mask.device)
    causal = idx[None, :] <= idx[:, None]  # [L, L]
    diag = idx[None, :] == idx[:, None]  # [L, L]
    real = (mask > 0)[:, None, None, :]  # [B, 1, 1, L]
    return (causal[None, None] & real) | diag[None, None]  # [B, 1, L, L]


class UserTower(nn.Module):
    """Causal transformer over left-padded item representations."""

    def __init__(self, dim: int, n_layers: int, n_heads: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.dim = dim
        self.max_len = max_len
        self.pos_emb = nn.Embedding(max_len, dim)  # row k = k-th item counted back from the newest
        nn.init.normal_(self.pos_emb.weight, std=INIT_STD)
        self.emb_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(dim, n_heads, dropout) for _ in range(n_layers)])
        self.ln_f = nn.LayerNorm(dim)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=INIT_STD)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, reps: Tensor, mask: Tensor) -> Tensor:
        """reps [B, L, D] left-padded, mask [B, L] (nonzero = real item) -> states [B, L, D]

        State t summarises items up to and including t (predicts item t + 1).
        """
        length = reps.shape[1]
        m = (mask > 0).to(reps.dtype).unsqueeze(-1)  # [B, L, 1]
        positions = (length - 1) - torch.arange(length, device=reps.device)  # [L], newest = 0
        x = (reps + self.pos_emb(positions)[None]) * m  # [B, L, D]
        x = self.emb_dropout(x)
        allowed = attention_mask(mask)  # [B, 1, L, L]
        for block in self.blocks:
            x = block(x, allowed)
        return self.ln_f(x) * m  # [B, L, D], zero at padding

    def last_state(self, reps: Tensor, mask: Tensor) -> Tensor:
        """State at the last (newest) position. -> [B, D]"""
        return self.forward(reps, mask)[:, -1]


class LastStateTower(nn.Module):
    """The exported graph: (item_reps [B, L, D], mask [B, L]) -> user [B, D]."""

    def __init__(self, tower: UserTower) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, item_reps: Tensor, mask: Tensor) -> Tensor:
        return self.tower.last_state(item_reps, mask)


class SeqRec(nn.Module):
    """Item encoder + user tower; scores are ``state · rep(i)`` over all items.

    By default the item encoder is a :class:`FusedItemEncoder` built from the
    ``use_id`` / ``use_text`` arguments; pass ``item_encoder`` for any other
    :class:`ItemEncoder` (text adaptor, code lookup). With ``profile_dim > 0`` a user
    profile vector [B, P] (the verbalised profile embedded by the text encoder) is
    projected to [B, D] and added to every real input position, so serving can add the
    same vector to the item representations it feeds the exported tower.
    """

    def __init__(
        self,
        n_items: int,
        *,
        hidden: int,
        n_layers: int,
        n_heads: int,
        max_len: int,
        dropout: float,
        text_vectors: np.ndarray | Tensor | None = None,
        use_id: bool = True,
        use_text: bool = True,
        known: np.ndarray | Tensor | None = None,
        id_dropout: float = 0.0,
        item_norm: float = 0.0,
        item_encoder: ItemEncoder | None = None,
        profile_dim: int = 0,
        profile_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= profile_dropout < 1.0:
            raise ValueError(f"profile_dropout must be in [0, 1), got {profile_dropout}")
        if item_encoder is not None:
            if item_encoder.n_items != n_items or item_encoder.dim != hidden:
                raise ValueError(
                    f"item_encoder is [{item_encoder.n_items}, {item_encoder.dim}], model is [{n_items}, {hidden}]"
                )
            # Typed Any: callers of the default (fused) model reach its own helpers (id_table, proj,
            # text_table) through ``model.items``; :meth:`item_encoder` is the typed view.
            self.items: Any = item_encoder
        else:
            self.items = FusedItemEncoder(
                n_items,
                hidden,
                text_vectors,
                use_id=use_id,
                use_text=use_text,
                known=known,
                id_dropout=id_dropout,
                item_norm=item_norm,
            )
        self.tower = UserTower(hidden, n_layers, n_heads, max_len, dropout)
        self.profile_proj: nn.Linear | None = None
        if profile_dim > 0:
            self.profile_proj = nn.Linear(profile_dim, hidden)
            nn.init.normal_(self.profile_proj.weight, std=INIT_STD)
            nn.init.zeros_(self.profile_proj.bias)
        self.profile_dropout = profile_dropout if profile_dim > 0 else 0.0
        # Profiles are centred on the training users' mean before the projection: the embedded profile
        # sentences share most of their direction (mean vector norm ~0.86 on ml-100k), and that common part,
        # added to every position, kept the model at the popularity solution. Set by set_profile_mean;
        # export folds it into the bias (W p + b - W mean), so serving projects raw vectors unchanged.
        # A dropped profile (profile dropout) is the mean, i.e. a zero centred vector: what serving uses
        # for a request without a profile. Registered only for profile models (state dicts of the others
        # are unchanged).
        if profile_dim > 0:
            self.register_buffer("profile_mean", torch.zeros(profile_dim))
        else:
            self.profile_mean: Tensor | None = None

    @property
    def item_encoder(self) -> ItemEncoder:
        enc = self.items
        assert isinstance(enc, ItemEncoder)
        return enc

    @property
    def n_items(self) -> int:
        return int(self.items.n_items)

    @property
    def max_len(self) -> int:
        return self.tower.max_len

    def item_reps(self, item_ids: Tensor) -> Tensor:
        """[...] -> [..., D]"""
        return self.items(item_ids)

    def all_item_reps(self) -> Tensor:
        """[N, D], without ID dropout (the vectors serving uses)."""
        return self.items.table(drop_ids=False)

    def set_profile_mean(self, vector: np.ndarray | Tensor) -> None:
        """The mean training profile [P]: the centre of the projection's input and the dropped profile."""
        mean = self.profile_mean
        if mean is None:
            raise ValueError("this model was built without user profiles (profile_dim=0)")
        v = torch.as_tensor(vector, dtype=torch.float32).reshape(-1)
        if v.shape != mean.shape:
            raise ValueError(f"profile mean has shape {tuple(v.shape)}, expected {tuple(mean.shape)}")
        mean.copy_(v.to(mean.device))

    def _inputs(self, table: Tensor, item_ids: Tensor, profile: Tensor | None) -> Tensor:
        reps = table[item_ids]  # [B, L, D]
        if self.profile_proj is not None:
            if profile is None:
                raise ValueError("this model was built with user profiles: pass profile [B, P]")
            assert self.profile_mean is not None
            profile = profile - self.profile_mean  # [B, P] centred
            if self.training and self.profile_dropout > 0:
                keep = torch.rand(profile.shape[0], 1, device=profile.device) >= self.profile_dropout  # [B, 1]
                profile = profile * keep
            reps = reps + self.profile_proj(profile)[:, None, :]  # [B, L, D] + [B, 1, D]
        elif profile is not None:
            raise ValueError("this model was built without user profiles (profile_dim=0)")
        return reps

    def forward(self, item_ids: Tensor, mask: Tensor, profile: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """item_ids [B, L] left-padded (any valid index at padding), mask [B, L], profile [B, P] | None
        -> (states [B, L, D], table [N, D]): the item table used for the inputs of
        this step (with ID dropout in training), to be used for the logits too."""
        table = self.items.table()  # [N, D]
        return self.tower(self._inputs(table, item_ids, profile), mask), table

    @torch.no_grad()
    def score(
        self, item_ids: Tensor, mask: Tensor, table: Tensor | None = None, profile: Tensor | None = None
    ) -> Tensor:
        """Full-ranking scores of the next item. -> [B, N]"""
        table = self.all_item_reps() if table is None else table  # [N, D]
        user = self.tower.last_state(self._inputs(table, item_ids, profile), mask)  # [B, D]
        return user @ table.T  # [B, N]
