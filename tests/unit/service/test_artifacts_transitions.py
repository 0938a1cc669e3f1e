"""The transition-prior section of an artifact set: loaded when whole, refused (naming the file) when not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.artifacts import ArtifactError, load_artifacts
from service.core.manifest import TRANSITION_SECTION, Manifest
from service.core.transitions import PriorShape, TransitionPrior
from service.encoding.fake import FakeEncoder
from tests.conftest import TEXT_DIM, TinyArtifacts
from tests.transition_prior import TRANSITIONS_FILE, with_transition_prior

SEQUENCES = [["P0001", "P0002", "P0003"], ["P0001", "P0002"]]


def rewrite(root: Path, prior: TransitionPrior, **section: object) -> None:
    """Replace the prior file (and section fields) and re-record the sha256s, as a faulty build would."""
    prior.save(root / TRANSITIONS_FILE)
    manifest = Manifest.read(root)
    manifest.extra[TRANSITION_SECTION].update(section)
    manifest.record_files(root)
    manifest.write(root)


def load(root: Path) -> object:
    return load_artifacts(root, FakeEncoder(dim=TEXT_DIM), variant="int8", device="cpu")


def test_a_set_with_the_prior_loads_it(tiny_artifacts: TinyArtifacts, tmp_path: Path) -> None:
    tiny = with_transition_prior(tiny_artifacts, tmp_path, SEQUENCES, weight=0.5, beta=2.0)
    art = load_artifacts(tiny.root, FakeEncoder(dim=TEXT_DIM), variant="int8", device="cpu")
    assert art.transitions is not None and art.transitions.weight == 0.5
    assert art.transitions.prior.beta == 2.0 and art.transitions.prior.n_items == len(art.item_ids)
    rows = art.transitions.successor_rows(["P0001"], "c", art.item_ids)
    assert [art.item_ids[r] for r in rows] == ["P0002"]


def test_a_prior_of_the_wrong_length_is_refused(tiny_artifacts: TinyArtifacts, tmp_path: Path) -> None:
    tiny = with_transition_prior(tiny_artifacts, tmp_path, SEQUENCES)
    rewrite(tiny.root, TransitionPrior.from_sequences([[0, 1]], 47))
    with pytest.raises(ArtifactError, match=r"seqrec/transitions\.npz has 47 item rows .* for 48 items"):
        load(tiny.root)


def test_a_prior_with_non_finite_values_is_refused(tiny_artifacts: TinyArtifacts, tmp_path: Path) -> None:
    tiny = with_transition_prior(tiny_artifacts, tmp_path, SEQUENCES)
    good = TransitionPrior.from_sequences([[0, 1]], 48)
    pop = good.pop.copy()
    pop[3] = np.nan
    rewrite(tiny.root, TransitionPrior(good.indptr, good.cols, good.counts, pop, 1.0))
    with pytest.raises(ArtifactError, match=r"seqrec/transitions\.npz has counts or popularity"):
        load(tiny.root)


def test_a_bad_section_or_unlisted_file_is_refused(tiny_artifacts: TinyArtifacts, tmp_path: Path) -> None:
    tiny = with_transition_prior(tiny_artifacts, tmp_path, SEQUENCES)
    rewrite(tiny.root, TransitionPrior.from_sequences([[0, 1]], 48), weight=-1.0)
    with pytest.raises(ArtifactError, match="transitions: weight must be >= 0"):
        load(tiny.root)
    manifest = Manifest.read(tiny.root)
    manifest.extra[TRANSITION_SECTION]["weight"] = 1.0
    del manifest.files[TRANSITIONS_FILE]
    manifest.write(tiny.root)
    with pytest.raises(ArtifactError, match=r"references seqrec/transitions\.npz but does not list it"):
        load(tiny.root)


def test_a_prior_counted_otherwise_than_the_manifest_says_is_refused(
    tiny_artifacts: TinyArtifacts, tmp_path: Path
) -> None:
    tiny = with_transition_prior(tiny_artifacts, tmp_path, SEQUENCES)
    wide = PriorShape(window=2, last=2, last_decay=0.5)
    rewrite(tiny.root, TransitionPrior.from_sequences([[0, 1, 2]], 48, shape=wide), shape=wide.to_dict())
    art = load(tiny.root)
    assert art.transitions.prior.shape == wide and art.transitions.context_size == 2  # type: ignore[attr-defined]
    rewrite(tiny.root, TransitionPrior.from_sequences([[0, 1, 2]], 48), shape=wide.to_dict())  # first-order file
    with pytest.raises(ArtifactError, match=r"transitions\.npz was counted with"):
        load(tiny.root)
    rewrite(tiny.root, TransitionPrior.from_sequences([[0, 1, 2]], 48), shape={"last": 1.5})
    with pytest.raises(ArtifactError, match="whole number"):
        load(tiny.root)
