"""``recsvc-train push`` refuses a set the service would refuse: every file its served features read
(each feature's typed spec names them) must be listed in the manifest, and their sections well formed."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from service.core.manifest import Manifest
from tests.conftest import TinyArtifacts
from training.cli import main

PRIOR = {"file": "seqrec/transitions.npz", "beta": 1.0, "n_items": 48}


def _push(root: Path, tmp_path: Path) -> int:
    qdrant = tmp_path / "qdrant"
    return main(["push", "--artifacts", str(root.parent), "--version", root.name, "--qdrant-path", str(qdrant)])


@pytest.mark.parametrize(
    ("section", "error"),
    [
        (
            {"file": "seqrec/transitions.npz", "weight": 0.5, "beta": 1.0, "n_items": 48},
            "references seqrec/transitions",
        ),
        ({"file": "seqrec/transitions.npz", "weight": -1.0, "beta": 1.0, "n_items": 48}, "weight must be >= 0"),
    ],
)
def test_push_refuses_an_unlisted_or_malformed_feature(
    tiny_artifacts: TinyArtifacts,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    section: dict[str, object],
    error: str,
) -> None:
    root = tmp_path / "artifacts" / tiny_artifacts.root.name
    shutil.copytree(tiny_artifacts.root, root)
    manifest = Manifest.read(root)
    manifest.extra["transitions"] = section  # its file is neither written nor listed
    manifest.write(root)
    with caplog.at_level(logging.ERROR):
        assert _push(root, tmp_path) == 2
    assert error in caplog.text
    assert not (tmp_path / "qdrant").exists()  # refused before Qdrant is opened
