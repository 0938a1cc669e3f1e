"""The serving export of a trained sequential model: the ONNX user tower (checked against torch) and the
profile projection."""

import copy
import logging
from pathlib import Path

import numpy as np
import torch

from training.loop import history_tensors
from training.models.seqrec import LastStateTower, SeqRec

logger = logging.getLogger(__name__)

logger = logging.getLogger(__name__)


ONNX_PARITY_MAX_ABS = 1e-4


USER_TOWER = "user_tower.onnx"


ID_EMBEDDINGS = "id_embeddings.npy"


TEXT_PROJECTION = "text_projection.npz"


PROFILE_PROJECTION = "profile_projection.npz"


def export_user_tower(model: SeqRec, path: Path, opset: int = 17) -> Path:
    """Export the user tower (last state) to ONNX from a CPU deep copy; ``model`` is untouched."""
    wrapper = LastStateTower(copy.deepcopy(model.tower).cpu()).eval()
    d, length = model.tower.dim, model.max_len
    reps = torch.randn(2, length, d)  # [B, L, D]
    mask = torch.ones(2, length, dtype=torch.int64)
    mask[1, : length // 2] = 0  # one left-padded row, so padding paths are traced
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        wrapper,
        (reps, mask),
        str(path),
        input_names=["item_reps", "mask"],
        output_names=["user"],
        dynamic_axes={"item_reps": {0: "batch", 1: "length"}, "mask": {0: "batch", 1: "length"}, "user": {0: "batch"}},
        opset_version=opset,
        dynamo=False,
    )
    return path


def check_onnx_parity(model: SeqRec, path: Path, n: int = 16, seed: int = 0) -> float:
    """Max |ONNX - torch| of the user vector on random histories of varied length."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, model.max_len + 1, size=n)
    lengths[0], lengths[-1] = 1, model.max_len
    histories = [rng.integers(0, model.n_items, size=int(k)) for k in lengths]
    device = next(model.parameters()).device
    ids, mask = history_tensors(histories, model.max_len, device)  # [B, L]
    model.eval()
    with torch.no_grad():
        reps = model.all_item_reps()[ids]  # [B, L, D]
        ref = model.tower.last_state(reps, mask).cpu().numpy()  # [B, D]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(
        ["user"], {"item_reps": reps.cpu().numpy().astype(np.float32), "mask": mask.cpu().numpy().astype(np.int64)}
    )
    return float(np.abs(got - ref).max())


def export_profile_projection(model: SeqRec, profiles: np.ndarray, path: Path) -> Path:
    """Write ``model.profile_proj`` as ``W`` [P, D], ``b`` [D] and the mean of ``profiles`` [U, P] as
    ``mean`` [P] (the profile a request without one is served with) to ``path`` (npz)."""
    if model.profile_proj is None:
        raise ValueError("the model was built without user profiles (profile_dim=0)")
    with torch.no_grad():
        weight = model.profile_proj.weight.detach().cpu().double()  # [D, P]
        w = weight.numpy().T.astype(np.float32)  # [P, D]
        # The model projects (p - centre); folded into the bias, serving projects p itself.
        centre = model.profile_mean.detach().cpu().double() if model.profile_mean is not None else None
        bias = model.profile_proj.bias.detach().cpu().double()
        b = (bias - (weight @ centre if centre is not None else 0.0)).numpy().astype(np.float32)  # [D]
    if profiles.ndim != 2 or profiles.shape[1] != w.shape[0]:
        raise ValueError(f"profiles must be [U, {w.shape[0]}], got {profiles.shape}")
    mean = profiles.mean(axis=0, dtype=np.float64).astype(np.float32)  # [P]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, W=w, b=b, mean=mean)
    return path
