"""The seqrec item fusion, shared by training and serving (numpy only).

``rep(i) = id_embedding(i) + text_vector(i) @ W + b`` — exactly what
``training.models.seqrec.FusedItemEncoder`` computes (its exported
``id_embeddings.npy`` already holds zero rows for items never trained, so those
get the text part alone). ``tests/unit/core/test_seqrec.py`` checks the two agree.

A model trained with user profiles also adds ``profile_vector @ W_p + b_p`` to every history item
(:func:`project_profiles`, ``SeqRec.profile_proj`` in training); ``tests/parity/test_seqrec_profile.py``
checks the served scores against torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


def fuse_item_vectors(
    text_vectors: np.ndarray | None,
    id_embeddings: np.ndarray | None,
    W: np.ndarray,
    b: np.ndarray,
) -> F32:
    """text_vectors [N, T] | None, id_embeddings [N, D] | None, W [T, D], b [D] -> [N, D] float32.

    Without text vectors the item is its ID embedding; without ID embeddings
    (a cold item, or a text-only model) it is its projected text.
    """
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
