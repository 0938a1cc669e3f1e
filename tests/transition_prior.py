"""Test helper: a copy of an artifact set with the transition prior section added (as the build writes it)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from service.core.manifest import TRANSITION_SECTION, Manifest, TransitionSpec
from service.core.transitions import PriorShape, TransitionPrior
from tests.conftest import TinyArtifacts

TRANSITIONS_FILE = "seqrec/transitions.npz"


def with_transition_prior(
    tiny: TinyArtifacts,
    dest: Path,
    sequences: Sequence[Sequence[str]],
    *,
    weight: float = 1.0,
    beta: float = 1.0,
    shape: PriorShape | None = None,
) -> TinyArtifacts:
    """Copy ``tiny``'s set under ``dest``/artifacts and add a prior counted on ``sequences`` (item ids)."""
    artifacts_dir = dest / "artifacts"
    root = artifacts_dir / tiny.root.name
    shutil.copytree(tiny.root, root)
    (artifacts_dir / "LATEST").write_text(tiny.version + "\n")
    item_ids: list[str] = json.loads((root / "items" / "item_ids.json").read_text())
    row = {iid: i for i, iid in enumerate(item_ids)}
    prior = TransitionPrior.from_sequences([[row[i] for i in s] for s in sequences], len(item_ids), beta, shape)
    prior.save(root / TRANSITIONS_FILE)
    manifest = Manifest.read(root)
    spec = TransitionSpec(
        file=TRANSITIONS_FILE, weight=weight, beta=beta, n_items=len(item_ids), shape=prior.shape.to_dict()
    )
    manifest.extra[TRANSITION_SECTION] = spec.to_dict()
    manifest.record_files(root)
    manifest.write(root)
    return TinyArtifacts(root=root, artifacts_dir=artifacts_dir, catalog=tiny.catalog, version=tiny.version)
