"""Dense (seqrec) recommender runtime: item vectors + ONNX user tower (no torch).

Item vectors come from the shared fusion (``service.core.seqrec``): known items
use their trained ID embedding plus projected text. New or never-trained items
have no trained ID row: with the manifest's cold-ID rule they borrow (scaled) the
ID rows of their nearest trained items by text (:meth:`SeqRecRuntime.set_reference`
gives the runtime the trained items' text), else they are their projected text
alone. A user is the tower's state after their history;
scores are dot products ``user · item``, the same as in training.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.core.manifest import SeqRecSpec
from service.core.seqrec import (
    ColdIdRule,
    fill_cold_ids,
    fuse_item_vectors,
    load_item_norm,
    load_text_projection,
    trained_rows,
    unit_rows,
)
from service.encoding.session import make_session

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
_ORT_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}


class SeqRecRuntime:
    """Serving side of the sequential recommender."""

    def __init__(
        self,
        user_tower_path: Path,
        id_embeddings: np.ndarray,
        W: np.ndarray,
        b: np.ndarray,
        *,
        max_len: int,
        device: str = "auto",
        threads: int = 0,
        batch_size: int = 256,
        cold_ids: ColdIdRule | None = None,
        item_norm: float = 0.0,
    ) -> None:
        if id_embeddings.ndim != 2 or id_embeddings.shape[1] != W.shape[1]:
            raise ValueError(f"id_embeddings {id_embeddings.shape} do not match W {W.shape}")
        if max_len < 1:
            raise ValueError("max_len must be >= 1")
        self.id_embeddings = id_embeddings.astype(np.float32, copy=False)  # [N_trained_rows, D]
        self.W = W.astype(np.float32, copy=False)  # [T, D]
        self.b = b.astype(np.float32, copy=False)  # [D]
        if item_norm < 0:
            raise ValueError(f"item_norm must be >= 0 (0 = off), got {item_norm}")
        self.item_norm = item_norm  # > 0: item vectors scaled to this L2 norm (service.core.seqrec.fuse_item_vectors)
        self.max_len = max_len
        self.batch_size = batch_size
        self.cold_ids = cold_ids if cold_ids is not None else ColdIdRule()
        self.trained = trained_rows(self.id_embeddings)  # [N_rows] bool
        self._ref_text: F32 | None = None  # [K, T] unit-normalised text of the trained rows (set_reference)
        self._ref_ids = self.id_embeddings[self.trained]  # [K, D] their ID rows
        self.session = make_session(Path(user_tower_path), device, threads)
        inputs = {i.name: i for i in self.session.get_inputs()}
        if set(inputs) != {"item_reps", "mask"}:
            raise ValueError(f"{user_tower_path}: expected inputs item_reps and mask, got {sorted(inputs)}")
        mask_type = inputs["mask"].type
        self._mask_dtype: type[np.generic] = _ORT_INT_TYPES.get(mask_type, np.float32)
        self.providers = self.session.get_providers()
        logger.info("seqrec runtime: dim %d, max_len %d, %s", self.dim, max_len, self.providers[0])

    @classmethod
    def from_manifest(cls, root: Path, spec: SeqRecSpec, device: str = "auto", threads: int = 0) -> SeqRecRuntime:
        ids = np.load(root / spec.id_embeddings)
        w, b = load_text_projection(root / spec.text_projection)
        if ids.shape[1] != spec.dim or w.shape[1] != spec.dim:
            raise ValueError(f"seqrec files have dim {ids.shape[1]}/{w.shape[1]}, manifest says {spec.dim}")
        rule = ColdIdRule(spec.cold_id_k, spec.cold_id_temperature, spec.cold_id_scale)
        return cls(
            root / spec.user_tower,
            ids,
            w,
            b,
            max_len=spec.max_len,
            device=device,
            threads=threads,
            cold_ids=rule,
            item_norm=load_item_norm(root / spec.text_projection),
        )

    def set_reference(self, text_vectors: np.ndarray) -> None:
        """Text vectors [N_rows, T] of the artifact items (row i = ID row i): the trained ones are the
        neighbours a cold item borrows its ID row from. Needed once before :meth:`item_vectors` when
        the cold-ID rule is active."""
        if text_vectors.shape != (self.id_embeddings.shape[0], self.text_dim):
            raise ValueError(
                f"reference text vectors must be [{self.id_embeddings.shape[0]}, {self.text_dim}], "
                f"got {text_vectors.shape}"
            )
        self._ref_text = unit_rows(np.ascontiguousarray(text_vectors[self.trained]))  # unit rows, once

    @property
    def dim(self) -> int:
        return int(self.W.shape[1])

    @property
    def text_dim(self) -> int:
        return int(self.W.shape[0])

    def item_vectors(self, text_vectors: np.ndarray, known: np.ndarray | None = None) -> F32:
        """Seqrec vectors of items. text_vectors [N, T] (row i = item i of the artifact set,
        new items appended) -> [N, D].

        ``known`` [N] bool: rows with True are artifact items (row i = ID row i), rows with
        False new items. None = every row is an artifact item (N must equal the number of
        ID rows; without a reference yet, these text vectors become it). Artifact rows that
        were never trained and new items are cold: they get the cold-ID rule's borrowed ID
        row, or none (text part only) when it is off.
        """
        n = text_vectors.shape[0]
        n_rows = self.id_embeddings.shape[0]
        if known is None:
            if n != n_rows:
                raise ValueError(f"{n} text vectors for {n_rows} ID rows; pass `known`")
            if self._ref_text is None:
                self.set_reference(text_vectors)  # the artifact items themselves
            known = np.ones(n, dtype=bool)
        known = np.asarray(known, dtype=bool)
        if known.shape != (n,):
            raise ValueError(f"known must have shape [{n}], got {known.shape}")
        return self.item_vectors_at(text_vectors, np.where(known, np.arange(n), -1))

    def item_vectors_at(self, text_vectors: np.ndarray, id_rows: np.ndarray) -> F32:
        """Seqrec vectors of any items, each with its own ID row: text_vectors [M, T], id_rows [M]
        int (the item's ID row, -1 for an item of no ID row) -> [M, D].

        Every output row depends on its own text vector and ID row only (the fusion, the cold-ID
        rule's nearest trained items), so a batch of new or changed items costs O(batch), not O(catalog):
        :meth:`item_vectors` is this with ``id_rows[i] = i`` for its known rows. Rows whose ID row was
        never trained, and rows of -1, are cold (as in :meth:`item_vectors`).
        """
        n = text_vectors.shape[0]
        n_rows = self.id_embeddings.shape[0]
        id_rows = np.asarray(id_rows, dtype=np.int64)
        if id_rows.shape != (n,):
            raise ValueError(f"id_rows must have shape [{n}], got {id_rows.shape}")
        if id_rows.size and (id_rows.max() >= n_rows or id_rows.min() < -1):
            raise ValueError(f"id_rows must be in [-1, {n_rows}); got {id_rows.min()}..{id_rows.max()}")
        ids = np.zeros((n, self.dim), dtype=np.float32)  # [M, D]
        known = id_rows >= 0
        ids[known] = self.id_embeddings[id_rows[known]]
        cold = ~known
        cold[known] = ~self.trained[id_rows[known]]
        if self.cold_ids.active and cold.any():
            if self._ref_text is None:
                raise RuntimeError("the cold-ID rule needs the artifact text vectors: call set_reference first")
            ids = fill_cold_ids(text_vectors, ids, cold, self.cold_ids, self._ref_text, self._ref_ids, ref_unit=True)
        return fuse_item_vectors(text_vectors, ids, self.W, self.b, self.item_norm)

    def user_vectors(self, histories: Sequence[np.ndarray], offsets: np.ndarray | None = None) -> F32:
        """histories: each [L_i, D] item vectors, oldest first -> user vectors [B, D].

        Each history is cut to its last ``max_len`` items and left-padded to the
        longest in its batch. ``offsets`` [B, D]: added to every item of history i
        (the projected user profile of a model trained with profiles, as
        ``SeqRec._inputs`` adds ``profile_proj(profile)`` in training).
        """
        if not histories:
            return np.zeros((0, self.dim), dtype=np.float32)
        if offsets is not None and offsets.shape != (len(histories), self.dim):
            raise ValueError(f"offsets must be [{len(histories)}, {self.dim}], got {offsets.shape}")
        out: list[F32] = []
        for start in range(0, len(histories), self.batch_size):
            stop = start + self.batch_size
            out.append(self._run(histories[start:stop], None if offsets is None else offsets[start:stop]))
        return np.concatenate(out, axis=0)

    def _run(self, histories: Sequence[np.ndarray], offsets: np.ndarray | None = None) -> F32:
        d = self.dim
        for i, h in enumerate(histories):
            if h.ndim != 2 or h.shape[1] != d:
                raise ValueError(f"history {i} must be [L, {d}], got {h.shape}")
            if h.shape[0] == 0:
                raise ValueError(f"history {i} is empty")
        length = min(self.max_len, max(h.shape[0] for h in histories))
        reps = np.zeros((len(histories), length, d), dtype=np.float32)  # [B, L, D]
        mask = np.zeros((len(histories), length), dtype=self._mask_dtype)  # [B, L]
        for i, h in enumerate(histories):
            tail = h[-length:]
            reps[i, length - len(tail) :] = tail
            if offsets is not None:
                reps[i, length - len(tail) :] += offsets[i]  # [l, D] + [D]; padding stays zero (masked anyway)
            mask[i, length - len(tail) :] = 1
        (user,) = self.session.run(["user"], {"item_reps": reps, "mask": mask})  # [B, D]
        return np.asarray(user, dtype=np.float32)
