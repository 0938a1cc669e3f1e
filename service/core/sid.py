"""Semantic-ID table and codec: the format training writes and serving reads.

A semantic ID (sid) is a tuple of ``n_levels`` codes, each in ``[0, codebook_size)``,
learned by residual quantisation of an item's frozen text vector, followed by one
collision digit in ``[0, collision_capacity)`` that makes the whole tuple unique.
Row ``i`` of the table is the item at row ``i`` of ``items/item_ids.json``.

Files (paths relative to the artifact set, listed in ``Manifest.extra["semantic_ids"]``)::

    semantic_ids/sids.npy        [N, n_levels + 1] int32, last column = collision digit
    semantic_ids/codec.npz       encoder MLP (w0, b0, w1, b1, ...) + codebooks (codebook_0 ...)

New items are encoded with :class:`SidCodec` (numpy only: the same arithmetic as the
torch RQ-VAE in ``training/models/rqvae.py``, which the training job checks) and get
the smallest collision digit not used by another item with the same codes, so IDs of
items already in the table never change (:meth:`SidTable.extend`).

Token layout shared by the generative model and the beam search: token ids
``0`` = pad (also the decoder start), ``1`` = eos, then level ``l`` code ``c`` is
``level_offset(l) + c``, with level ``n_levels`` being the collision digit.

Nothing here imports web or ML frameworks (numpy only).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

SIDS_FILE = "semantic_ids/sids.npy"
CODEC_FILE = "semantic_ids/codec.npz"
PAD_TOKEN = 0
EOS_TOKEN = 1
# How a generative model's encoder reads a history (service.semantic_ids.decoder.history_input).
HISTORY_INPUTS = ("tokens", "items")
N_SPECIAL_TOKENS = 2

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]


class SidError(ValueError):
    """A semantic-ID table or codec is malformed, or an operation does not fit its layout."""


@dataclass(frozen=True)
class SidLayout:
    """Shape of a semantic ID: ``n_levels`` codes of ``codebook_size`` values plus a collision digit."""

    n_levels: int = 3
    codebook_size: int = 256
    collision_capacity: int = 32  # collision digit values 0 .. capacity-1

    def __post_init__(self) -> None:
        if self.n_levels < 1 or self.codebook_size < 2 or self.collision_capacity < 1:
            raise SidError(f"invalid sid layout {self}")

    @property
    def depth(self) -> int:
        """Tokens per semantic ID (codes + collision digit)."""
        return self.n_levels + 1

    def level_size(self, level: int) -> int:
        if not 0 <= level < self.depth:
            raise SidError(f"level {level} outside 0..{self.depth - 1}")
        return self.codebook_size if level < self.n_levels else self.collision_capacity

    @property
    def level_sizes(self) -> tuple[int, ...]:
        return tuple(self.level_size(level) for level in range(self.depth))

    def level_offset(self, level: int) -> int:
        """Token id of code 0 at ``level``."""
        return N_SPECIAL_TOKENS + sum(self.level_sizes[:level])

    @property
    def vocab_size(self) -> int:
        return N_SPECIAL_TOKENS + sum(self.level_sizes)

    def to_tokens(self, sids: npt.ArrayLike) -> I64:
        """sids [..., depth] -> token ids [..., depth]."""
        s = np.asarray(sids, dtype=np.int64)
        offsets = np.array([self.level_offset(lv) for lv in range(self.depth)], dtype=np.int64)
        return s + offsets  # [..., depth]

    def from_tokens(self, tokens: npt.ArrayLike) -> I64:
        """token ids [..., depth] -> sids [..., depth] (no range check)."""
        t = np.asarray(tokens, dtype=np.int64)
        offsets = np.array([self.level_offset(lv) for lv in range(self.depth)], dtype=np.int64)
        return t - offsets


@dataclass
class SidSpec:
    """The ``semantic_ids`` section of the manifest (stored in ``Manifest.extra``)."""

    n_levels: int
    codebook_size: int
    collision_capacity: int
    sids: str = SIDS_FILE
    codec: str = CODEC_FILE
    unique_prefix_share: float = 0.0
    codebook_usage: list[float] | None = None
    balanced_last_level: bool = False  # stored last codes were made distinct within groups (training only)
    # Width of the collaborative part the codec reads after the text vector (0 = text only): items
    # coded at serve time have no interactions, so they get zeros there (:meth:`codec_input`).
    cf_dim: int = 0

    @property
    def layout(self) -> SidLayout:
        return SidLayout(self.n_levels, self.codebook_size, self.collision_capacity)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def codec_input(self, text_vectors: npt.ArrayLike) -> F32:
        """The codec's input for items known by text alone: [M, T] -> [M, T + cf_dim] (zero
        collaborative part)."""
        t = np.asarray(text_vectors, dtype=np.float32)
        if t.ndim != 2:
            raise SidError(f"expected text vectors [M, T], got shape {t.shape}")
        if not self.cf_dim:
            return t
        return np.concatenate([t, np.zeros((len(t), self.cf_dim), dtype=np.float32)], axis=1)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SidSpec:
        try:
            return cls(**d)
        except TypeError as exc:
            raise SidError(f"malformed semantic_ids manifest section: {exc}") from exc


# ------------------------------------------------------------------ codec


class SidCodec:
    """Text vector -> codes: encoder MLP (ReLU between layers) then residual nearest-codeword search."""

    def __init__(self, weights: list[tuple[F32, F32]], codebooks: list[F32]) -> None:
        if not weights or not codebooks:
            raise SidError("codec needs at least one encoder layer and one codebook")
        dims = {cb.shape[1] for cb in codebooks}
        if len(dims) != 1 or weights[-1][0].shape[1] not in dims:
            raise SidError("codebook dims must all equal the encoder output dim")
        for (w, b), (w2, _) in itertools.pairwise(weights):
            if w.shape[1] != w2.shape[0] or b.shape != (w.shape[1],):
                raise SidError("encoder layer shapes do not chain")
        self.weights = [(w.astype(np.float32), b.astype(np.float32)) for w, b in weights]
        self.codebooks = [cb.astype(np.float32) for cb in codebooks]

    @property
    def in_dim(self) -> int:
        return int(self.weights[0][0].shape[0])

    @property
    def n_levels(self) -> int:
        return len(self.codebooks)

    def latent(self, vectors: npt.ArrayLike) -> F32:
        """vectors [M, T] -> latents [M, E]."""
        h = np.asarray(vectors, dtype=np.float32)
        if h.ndim != 2 or h.shape[1] != self.in_dim:
            raise SidError(f"expected text vectors [M, {self.in_dim}], got {h.shape}")
        for i, (w, b) in enumerate(self.weights):
            h = h @ w + b  # [M, H_i]
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return h.astype(np.float32)

    def encode(self, vectors: npt.ArrayLike) -> I32:
        """vectors [M, T] -> codes [M, n_levels] (nearest codeword of each residual)."""
        residual = self.latent(vectors)  # [M, E]
        codes = np.zeros((residual.shape[0], self.n_levels), dtype=np.int32)
        for level, cb in enumerate(self.codebooks):
            d = (residual**2).sum(1, keepdims=True) - 2.0 * residual @ cb.T + (cb**2).sum(1)[None, :]  # [M, K]
            c = d.argmin(axis=1)
            codes[:, level] = c
            residual = residual - cb[c]
        return codes

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {}
        for i, (w, b) in enumerate(self.weights):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        for i, cb in enumerate(self.codebooks):
            arrays[f"codebook_{i}"] = cb
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez(f, **cast(dict[str, Any], arrays))

    @classmethod
    def load(cls, path: Path) -> SidCodec:
        with np.load(path) as z:
            weights: list[tuple[F32, F32]] = []
            i = 0
            while f"w{i}" in z:
                weights.append((z[f"w{i}"], z[f"b{i}"]))
                i += 1
            codebooks: list[F32] = []
            j = 0
            while f"codebook_{j}" in z:
                codebooks.append(z[f"codebook_{j}"])
                j += 1
        return cls(weights, codebooks)


# ------------------------------------------------------------------ table


def assign_collision_digits(codes: npt.ArrayLike, capacity: int) -> I32:
    """codes [N, L] -> digits [N]: 0, 1, 2, ... among items sharing codes, in row order."""
    c = np.asarray(codes, dtype=np.int64)
    if c.ndim != 2:
        raise SidError(f"codes must be [N, L], got {c.shape}")
    digits = np.zeros(len(c), dtype=np.int32)
    if not len(c):
        return digits
    _, inverse = np.unique(c, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")  # rows grouped by code tuple, row order kept inside
    grouped = inverse[order]
    starts = np.r_[0, np.flatnonzero(np.diff(grouped)) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(grouped)]))
    digits[order] = (np.arange(len(grouped)) - group_start).astype(np.int32)
    if int(digits.max()) >= capacity:
        raise SidError(
            f"{int(digits.max()) + 1} items share one code tuple but the collision capacity is {capacity}: "
            "raise collision_capacity or train better codebooks"
        )
    return digits


class SidTable:
    """Item row -> semantic ID (codes + collision digit); every row unique."""

    def __init__(self, sids: npt.ArrayLike, layout: SidLayout) -> None:
        s = np.asarray(sids, dtype=np.int32)
        if s.ndim != 2 or s.shape[1] != layout.depth:
            raise SidError(f"sid table must be [N, {layout.depth}], got {s.shape}")
        for level, size in enumerate(layout.level_sizes):
            col = s[:, level]
            if len(col) and (int(col.min()) < 0 or int(col.max()) >= size):
                raise SidError(f"sid level {level} has values outside [0, {size})")
        if len(s) and len(np.unique(s, axis=0)) != len(s):
            raise SidError("semantic IDs are not unique")
        self.sids = s  # [N, depth]
        self.layout = layout

    def __len__(self) -> int:
        return len(self.sids)

    @classmethod
    def from_codes(cls, codes: npt.ArrayLike, layout: SidLayout) -> SidTable:
        c = np.asarray(codes, dtype=np.int32)
        digits = assign_collision_digits(c, layout.collision_capacity)
        return cls(np.concatenate([c, digits[:, None]], axis=1), layout)

    def tokens(self) -> I64:
        """[N, depth] token ids (see the module docstring)."""
        return self.layout.to_tokens(self.sids)

    def extend(self, new_codes: npt.ArrayLike) -> SidTable:
        """A table with rows for new items appended; existing rows are unchanged.

        Each new item gets the smallest collision digit that no item (old or
        earlier new) with the same codes uses.
        """
        nc = np.asarray(new_codes, dtype=np.int32)
        if nc.ndim != 2 or nc.shape[1] != self.layout.n_levels:
            raise SidError(f"new codes must be [M, {self.layout.n_levels}], got {nc.shape}")
        used: dict[tuple[int, ...], set[int]] = {}
        for row in self.sids.tolist():
            used.setdefault(tuple(row[:-1]), set()).add(row[-1])
        rows = []
        for code in nc.tolist():
            taken = used.setdefault(tuple(code), set())
            digit = next(d for d in range(len(taken) + 1) if d not in taken)
            if digit >= self.layout.collision_capacity:
                raise SidError(
                    f"no free collision digit for codes {tuple(code)} (capacity {self.layout.collision_capacity})"
                )
            taken.add(digit)
            rows.append([*code, digit])
        added = np.asarray(rows, dtype=np.int32).reshape(-1, self.layout.depth)
        return SidTable(np.concatenate([self.sids, added], axis=0), self.layout)

    def select(self, rows: npt.ArrayLike) -> SidTable:
        """The sub-table of ``rows`` (in that order): used when items leave the catalog."""
        return SidTable(self.sids[np.asarray(rows, dtype=np.int64)], self.layout)

    # ----------------------------------------------------------- stats
    def unique_prefix_share(self) -> float:
        """Share of items whose codes (without the collision digit) are already unique."""
        if not len(self):
            return 0.0
        _, inverse, counts = np.unique(self.sids[:, :-1], axis=0, return_inverse=True, return_counts=True)
        return float((counts[inverse.reshape(-1)] == 1).mean())

    def codebook_usage(self) -> list[float]:
        """Per code level: share of the codebook's codes used by at least one item."""
        return [
            float(len(np.unique(self.sids[:, lv])) / self.layout.codebook_size) for lv in range(self.layout.n_levels)
        ]

    # -------------------------------------------------------------- io
    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.save(f, self.sids)

    @classmethod
    def load(cls, path: Path, layout: SidLayout) -> SidTable:
        if not path.is_file():
            raise SidError(f"sid table not found: {path}")
        return cls(np.load(path), layout)


def load_semantic_ids(root: Path, section: dict[str, Any]) -> tuple[SidSpec, SidTable, SidCodec]:
    """Spec, table and codec of an artifact set from its ``extra["semantic_ids"]`` section."""
    spec = SidSpec.from_dict(section)
    table = SidTable.load(root / spec.sids, spec.layout)
    codec = SidCodec.load(root / spec.codec)
    if codec.n_levels != spec.n_levels:
        raise SidError(f"codec has {codec.n_levels} codebooks, manifest says {spec.n_levels} levels")
    return spec, table, codec
