"""The seqrec item fusion, shared by training and serving (numpy only).

``rep(i) = id_embedding(i) + text_vector(i) @ W + b`` (scaled to L2 norm ``norm`` when the model was
trained with ``item_norm > 0``: ``text_projection.npz`` then holds it as ``norm``) — exactly what
``training.models.seqrec.FusedItemEncoder`` computes (its exported
``id_embeddings.npy`` already holds zero rows for items never trained, so those
get the text part alone). ``tests/unit/core/test_seqrec.py`` checks the two agree.

A model trained with user profiles also adds ``profile_vector @ W_p + b_p`` to every history item
(:func:`project_profiles`, ``SeqRec.profile_proj`` in training); ``tests/parity/test_seqrec_profile.py``
checks the served scores against torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


def fuse_item_vectors(
    text_vectors: np.ndarray | None,
    id_embeddings: np.ndarray | None,
    W: np.ndarray,
    b: np.ndarray,
    norm: float = 0.0,
) -> F32:
    """text_vectors [N, T] | None, id_embeddings [N, D] | None, W [T, D], b [D] -> [N, D] float32.

    Without text vectors the item is its ID embedding; without ID embeddings
    (a cold item, or a text-only model) it is its projected text. ``norm`` > 0: every row is then
    scaled to that L2 norm (``FusedItemEncoder(item_norm=...)``); 0 = the raw sum.
    """
    if norm < 0:
        raise ValueError(f"norm must be >= 0 (0 = off), got {norm}")
    if W.ndim != 2 or b.shape != (W.shape[1],):
        raise ValueError(f"W must be [T, D] and b [D], got {W.shape} and {b.shape}")
    d = W.shape[1]
    out: F32 | None = None
    if id_embeddings is not None:
        if id_embeddings.ndim != 2 or id_embeddings.shape[1] != d:
            raise ValueError(f"id_embeddings must be [N, {d}], got {id_embeddings.shape}")
        out = id_embeddings.astype(np.float32, copy=True)
    if text_vectors is not None:
        if text_vectors.ndim != 2 or text_vectors.shape[1] != W.shape[0]:
            raise ValueError(f"text_vectors must be [N, {W.shape[0]}], got {text_vectors.shape}")
        text = text_vectors.astype(np.float32) @ W.astype(np.float32) + b.astype(np.float32)  # [N, D]
        if out is None:
            out = text
        else:
            if out.shape[0] != text.shape[0]:
                raise ValueError(f"{text.shape[0]} text vectors but {out.shape[0]} id embeddings")
            out += text
    if out is None:
        raise ValueError("need text_vectors or id_embeddings")
    if norm > 0:
        out = np.float32(norm) * unit_rows(out)
    return out.astype(np.float32, copy=False)


def load_text_projection(path: Path) -> tuple[F32, F32]:
    """Read ``text_projection.npz`` -> (W [T, D], b [D]) float32."""
    with np.load(path) as z:
        if "W" not in z or "b" not in z:
            raise ValueError(f"{path}: expected arrays 'W' and 'b'")
        w = z["W"].astype(np.float32)
        b = z["b"].astype(np.float32)
    if w.ndim != 2 or b.shape != (w.shape[1],):
        raise ValueError(f"{path}: W must be [T, D] and b [D], got {w.shape} and {b.shape}")
    return w, b


def load_item_norm(path: Path) -> float:
    """The item-representation norm of ``text_projection.npz`` (its optional scalar ``norm``; absent in
    artifact sets of models trained without ``item_norm``) -> float, 0.0 = raw sums."""
    with np.load(path) as z:
        if "norm" not in z:
            return 0.0
        arr = np.asarray(z["norm"], dtype=np.float64)
    if arr.size != 1 or not np.isfinite(arr).all() or float(arr.reshape(-1)[0]) < 0:
        raise ValueError(f"{path}: 'norm' must be one finite value >= 0, got {arr!r}")
    return float(arr.reshape(-1)[0])


def project_profiles(vectors: np.ndarray, W: np.ndarray, b: np.ndarray) -> F32:
    """Profile vectors [..., P] -> offsets [..., D]: ``vector @ W + b``, exactly ``SeqRec.profile_proj``.

    The offset is added to every item representation of the user's history before the user tower,
    as ``SeqRec._inputs`` does in training.
    """
    if W.ndim != 2 or b.shape != (W.shape[1],):
        raise ValueError(f"profile W must be [P, D] and b [D], got {W.shape} and {b.shape}")
    if vectors.shape[-1] != W.shape[0]:
        raise ValueError(f"profile vectors must be [..., {W.shape[0]}], got {vectors.shape}")
    out = vectors.astype(np.float32) @ W.astype(np.float32) + b.astype(np.float32)  # [..., D]
    return out.astype(np.float32, copy=False)


def load_profile_projection(path: Path) -> tuple[F32, F32, F32]:
    """Read ``profile_projection.npz`` -> (W [P, D], b [D], mean profile vector [P]) float32."""
    with np.load(path) as z:
        missing = [k for k in ("W", "b", "mean") if k not in z]
        if missing:
            raise ValueError(f"{path}: expected arrays 'W', 'b' and 'mean', missing {missing}")
        w = z["W"].astype(np.float32)
        b = z["b"].astype(np.float32)
        mean = z["mean"].astype(np.float32)
    if w.ndim != 2 or b.shape != (w.shape[1],) or mean.shape != (w.shape[0],):
        raise ValueError(f"{path}: W must be [P, D], b [D] and mean [P], got {w.shape}, {b.shape}, {mean.shape}")
    return w, b, mean


def unit_rows(x: np.ndarray) -> F32:
    """Rows scaled to unit L2 norm (zero rows stay zero). [N, T] -> [N, T] float32"""
    x = x.astype(np.float32)
    out: F32 = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return out


def impute_id_embeddings(
    text_vectors: np.ndarray,
    ref_text_vectors: np.ndarray,
    ref_id_embeddings: np.ndarray,
    *,
    k: int,
    temperature: float,
    chunk: int = 1024,
    ref_unit: bool = False,
) -> F32:
    """ID rows for items the model never trained on, borrowed from their nearest trained items by text.

    A fused item is ``id(i) + text(i) @ W + b``; a new item has no trained ID row, and a zero row leaves
    it far from every trained item the user tower learnt to point at (it is scored by a different
    kind of vector). Instead its ID row is the softmax(cosine / ``temperature``)-weighted mean of the
    ID rows of the ``k`` trained items whose text is most similar to its own.

    text_vectors [M, T] (the new items), ref_text_vectors [K, T] and ref_id_embeddings [K, D] (the
    trained items) -> [M, D] float32. ``k`` is capped at K. ``ref_unit``: the reference rows are already
    L2-normalised (a caller that keeps them so saves normalising K rows per call).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if ref_text_vectors.ndim != 2 or ref_id_embeddings.ndim != 2:
        raise ValueError("ref_text_vectors must be [K, T] and ref_id_embeddings [K, D]")
    if ref_text_vectors.shape[0] != ref_id_embeddings.shape[0]:
        raise ValueError(f"{ref_text_vectors.shape[0]} reference text vectors for {ref_id_embeddings.shape[0]} ID rows")
    if text_vectors.ndim != 2 or text_vectors.shape[1] != ref_text_vectors.shape[1]:
        raise ValueError(f"text_vectors must be [M, {ref_text_vectors.shape[1]}], got {text_vectors.shape}")
    n_ref, d = ref_id_embeddings.shape
    out = np.zeros((text_vectors.shape[0], d), dtype=np.float32)
    if n_ref == 0 or text_vectors.shape[0] == 0:
        return out
    k = min(k, n_ref)

    ref = ref_text_vectors.astype(np.float32, copy=False) if ref_unit else unit_rows(ref_text_vectors)  # [K, T]
    ref_ids = ref_id_embeddings.astype(np.float32)
    for s in range(0, text_vectors.shape[0], chunk):
        sims = unit_rows(text_vectors[s : s + chunk]) @ ref.T  # [C, K]
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < n_ref else np.tile(np.arange(n_ref), (len(sims), 1))
        top_sims = np.take_along_axis(sims, top, axis=1) / temperature  # [C, k]
        w = np.exp(top_sims - top_sims.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)  # [C, k]
        out[s : s + chunk] = np.einsum("ck,ckd->cd", w, ref_ids[top])  # [C, D]
    return out


@dataclass(frozen=True)
class ColdIdRule:
    """How items without a trained ID row get one (:func:`impute_id_embeddings`), or ``k == 0``: they
    keep a zero ID row and are served by their projected text alone."""

    k: int = 0
    temperature: float = 0.05
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.k < 0:
            raise ValueError(f"cold ID k must be >= 0, got {self.k}")
        if self.temperature <= 0:
            raise ValueError(f"cold ID temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.scale <= 4.0:
            raise ValueError(f"cold ID scale must be in [0, 4], got {self.scale}")

    @property
    def active(self) -> bool:
        return self.k > 0 and self.scale > 0


def trained_rows(id_embeddings: np.ndarray) -> npt.NDArray[np.bool_]:
    """Rows of an exported ID table that were trained: the export writes exact zeros for the others. -> [N]"""
    return np.asarray(np.any(id_embeddings != 0, axis=1))


def fill_cold_ids(
    text_vectors: np.ndarray,
    id_embeddings: np.ndarray,
    cold: np.ndarray,
    rule: ColdIdRule,
    ref_text_vectors: np.ndarray,
    ref_id_embeddings: np.ndarray,
    *,
    ref_unit: bool = False,
) -> F32:
    """A copy of ``id_embeddings`` [N, D] whose ``cold`` [N] rows hold ``rule.scale`` x their imputed
    ID row (from ``text_vectors`` [N, T] and the trained reference items); other rows unchanged."""
    out = np.array(id_embeddings, dtype=np.float32, copy=True)
    cold = np.asarray(cold, dtype=bool)
    if rule.active and cold.any():
        imputed = impute_id_embeddings(
            text_vectors[cold],
            ref_text_vectors,
            ref_id_embeddings,
            k=rule.k,
            temperature=rule.temperature,
            ref_unit=ref_unit,
        )
        out[cold] = rule.scale * imputed
    return out


def artifact_item_vectors(
    text_vectors: np.ndarray,
    id_embeddings: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    rule: ColdIdRule,
    norm: float = 0.0,
) -> F32:
    """Seqrec vectors [N, D] of an artifact set's own items (text [N, T], exported ID rows [N, D]) as
    the service scores them: rows that were never trained (zero) get their ID row from ``rule``;
    ``norm`` as in :func:`fuse_item_vectors`."""
    trained = trained_rows(id_embeddings)
    if rule.active and not trained.all():
        id_embeddings = fill_cold_ids(
            text_vectors, id_embeddings, ~trained, rule, text_vectors[trained], id_embeddings[trained]
        )
    return fuse_item_vectors(text_vectors, id_embeddings, W, b, norm)
