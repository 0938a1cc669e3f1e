"""Resumable training checkpoints.

``last.pt`` holds everything needed to continue a run where it stopped (model,
optimizer, progress, early-stopping state, RNG states); ``best.pt`` holds the
weights of the best validated epoch. Both are written atomically (temp file +
rename), so a crash mid-write leaves the previous checkpoint intact. Files are
loaded with ``weights_only=True``: they contain tensors and plain Python values
only.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

LAST_NAME = "last.pt"
BEST_NAME = "best.pt"


@dataclass
class TrainState:
    """Progress of a run, saved with every checkpoint."""

    epoch: int = 0  # epochs completed
    best_metric: float = float("-inf")
    best_epoch: int = 0
    bad_evals: int = 0  # evaluations since the last improvement
    elapsed: float = 0.0  # training seconds spent so far (all runs together)
    finished: bool = False
    stop_reason: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    fingerprint: str = ""  # identifies config + data; a different one is not resumed


def rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def _atomic_save(obj: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the model's weights."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def save_checkpoint(out_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: TrainState) -> Path:
    path = out_dir / LAST_NAME
    _atomic_save(
        {
            "model": cpu_state_dict(model),
            "optimizer": optimizer.state_dict(),
            "state": asdict(state),
            "rng": rng_state(),
        },
        path,
    )
    return path


def load_checkpoint(
    out_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, *, fingerprint: str = ""
) -> TrainState | None:
    """Restore model, optimizer and RNG from ``out_dir/last.pt``.

    Returns ``None`` (and changes nothing) when there is no checkpoint or it was
    written for a different fingerprint.
    """
    path = out_dir / LAST_NAME
    if not path.is_file():
        return None
    data = torch.load(path, map_location="cpu", weights_only=True)
    state = TrainState(**data["state"])
    if state.fingerprint != fingerprint:
        logger.warning("%s was written for another config or dataset; starting afresh", path)
        return None
    model.load_state_dict(data["model"])
    optimizer.load_state_dict(data["optimizer"])
    set_rng_state(data["rng"])
    return state


def save_weights(path: Path, weights: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> Path:
    _atomic_save({"model": weights, "meta": meta or {}}, path)
    return path


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    data = torch.load(path, map_location="cpu", weights_only=True)
    return data["model"], data.get("meta", {})
