"""The served-feature protocol (service/features): registry, typed runtimes, verify -> load -> serve.

A feature written here (item popularity read from a file of the set) plugs in through the same
protocol as the shipped ones: its section marks the set, its files must be listed, its ``load``
checks them against the catalog, and ``serve`` applies the settings.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr

from service.artifacts import ArtifactError, load_artifacts, verify_artifact_set
from service.config import Settings
from service.core.manifest import Manifest
from service.core.sid import SidSpec
from service.encoding.fake import FakeEncoder
from service.features import (
    FEATURES,
    GENERATIVE,
    PROFILES,
    TRANSITIONS,
    Feature,
    FeatureError,
    FeatureRuntimes,
    LoadContext,
    feature_paths,
    has_feature,
    load_features,
    serve_features,
)
from service.features.generative import semantic_ids_spec
from service.recommender.markov import ServedPrior
from tests.conftest import TEXT_DIM, TinyArtifacts
from tests.transition_prior import TRANSITIONS_FILE, with_transition_prior

POPULARITY_FILE = "items/popularity.npy"


@dataclass(frozen=True)
class PopularitySpec:
    file: str
    weight: float


@dataclass
class Popularity:
    counts: np.ndarray  # [N]
    weight: float


class PopularityFeature:
    """A feature as a new module would write it: one item-popularity count per catalog row."""

    name = "popularity"
    sections = ("popularity",)
    needs_seqrec = "the manifest has a popularity section but no seqrec model to add it to"

    def spec(self, manifest: Manifest) -> PopularitySpec:
        section = manifest.extra["popularity"]
        try:
            return PopularitySpec(file=str(section["file"]), weight=float(section["weight"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise FeatureError(f"malformed popularity section: {exc}") from exc

    def paths(self, spec: PopularitySpec) -> list[str]:
        return [spec.file]

    def load(self, spec: PopularitySpec, ctx: LoadContext) -> Popularity:
        counts = np.load(ctx.root / spec.file)
        if counts.shape != (len(ctx.item_ids),):
            raise FeatureError(f"{spec.file} has shape {counts.shape} for {len(ctx.item_ids)} items")
        return Popularity(counts, spec.weight)

    def serve(self, runtime: Popularity, settings: Settings) -> Popularity | None:
        return runtime if settings.transition_prior else None


POPULARITY = PopularityFeature()
WITH_POPULARITY: tuple[Feature[Any, Any], ...] = (*FEATURES, POPULARITY)


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, admin_token=SecretStr("t" * 32), **values)  # type: ignore[call-arg]


def copy_set(tiny: TinyArtifacts, dest: Path) -> Path:
    root = dest / tiny.root.name
    shutil.copytree(tiny.root, root)
    return root


def add_section(root: Path, key: str, section: dict[str, Any], record: bool = True) -> None:
    manifest = Manifest.read(root)
    manifest.extra[key] = section
    if record:
        manifest.record_files(root)
    manifest.write(root)


def context(root: Path, *, seqrec: bool = True) -> LoadContext:
    art = load_artifacts(root, FakeEncoder(dim=TEXT_DIM), variant="int8", device="cpu")
    return LoadContext(
        root=root,
        manifest=art.manifest,
        item_ids=art.item_ids,
        text_vectors=art.text_vectors,
        encoder_dim=TEXT_DIM,
        seqrec=art.seqrec if seqrec else None,
    )


def test_the_registry_names_each_feature_once_in_load_order() -> None:
    assert [f.name for f in FEATURES] == ["profiles", "transitions", "generative"]
    assert len({f.name for f in FEATURES}) == len(FEATURES)
    assert GENERATIVE.sections == ("semantic_ids", "genrec")
    assert PROFILES.needs_seqrec and TRANSITIONS.needs_seqrec and GENERATIVE.needs_seqrec is None


def test_runtimes_are_looked_up_by_feature() -> None:
    runtimes = FeatureRuntimes().with_runtime(POPULARITY, Popularity(np.ones(3), 0.5))
    got = runtimes.get(POPULARITY)
    assert isinstance(got, Popularity) and got.weight == 0.5
    assert runtimes.get(TRANSITIONS) is None and POPULARITY in runtimes and TRANSITIONS not in runtimes
    assert runtimes.with_runtime(POPULARITY, None).names == [] and runtimes.names == ["popularity"]


def test_a_new_feature_plugs_in_through_the_protocol(tiny_artifacts: TinyArtifacts, tmp_path: Path) -> None:
    root = copy_set(tiny_artifacts, tmp_path)
    ctx = context(root)
    assert load_features(WITH_POPULARITY, ctx).names == []  # no section: not loaded
    np.save(root / POPULARITY_FILE, np.arange(len(ctx.item_ids), dtype=np.float32))
    add_section(root, "popularity", {"file": POPULARITY_FILE, "weight": 0.25})
    ctx = context(root)
    assert has_feature(POPULARITY, ctx.manifest)
    assert feature_paths(WITH_POPULARITY, ctx.manifest) == [POPULARITY_FILE]
    loaded = load_features(WITH_POPULARITY, ctx)
    pop = loaded.get(POPULARITY)
    assert pop is not None and pop.counts[5] == 5.0 and pop.weight == 0.25
    # serve: the settings switch it off in this process, the loaded runtime stays
    assert serve_features(WITH_POPULARITY, loaded, settings(transition_prior=False)).get(POPULARITY) is None
    assert serve_features(WITH_POPULARITY, loaded, settings()).get(POPULARITY) is pop


def test_a_feature_is_refused_with_its_own_message(tiny_artifacts: TinyArtifacts, tmp_path: Path) -> None:
    root = copy_set(tiny_artifacts, tmp_path)
    np.save(root / POPULARITY_FILE, np.zeros(3, dtype=np.float32))  # 3 rows for 48 items
    add_section(root, "popularity", {"file": POPULARITY_FILE, "weight": 1.0})
    with pytest.raises(FeatureError, match=r"popularity\.npy has shape \(3,\) for 48 items"):
        load_features(WITH_POPULARITY, context(root))
    with pytest.raises(FeatureError, match="popularity section but no seqrec model"):
        load_features(WITH_POPULARITY, context(root, seqrec=False))
    add_section(root, "popularity", {"file": POPULARITY_FILE, "weight": "heavy"})
    with pytest.raises(FeatureError, match="malformed popularity section"):
        load_features(WITH_POPULARITY, context(root))


def test_served_runtimes_follow_the_settings(tiny_artifacts: TinyArtifacts, tmp_path: Path) -> None:
    tiny = with_transition_prior(tiny_artifacts, tmp_path, [["P0001", "P0002"]], weight=0.5)
    art = load_artifacts(tiny.root, FakeEncoder(dim=TEXT_DIM), variant="int8", device="cpu")
    assert art.features.names == ["transitions"] and isinstance(art.transitions, ServedPrior)
    assert art.features.get(TRANSITIONS) is art.transitions and art.profiles is None
    assert serve_features(FEATURES, art.features, settings()).get(TRANSITIONS) is art.transitions
    assert serve_features(FEATURES, art.features, settings(transition_prior=False)).names == []
    assert art.transitions is not None  # switching it off does not unload it


def test_verify_refuses_a_feature_file_the_manifest_does_not_list(
    tiny_artifacts: TinyArtifacts, tmp_path: Path
) -> None:
    """Generative sections whose sid files are not in ``files`` (not hashed): refused before loading."""
    root = copy_set(tiny_artifacts, tmp_path)
    sid = SidSpec(n_levels=2, codebook_size=8, collision_capacity=4)
    add_section(root, "semantic_ids", sid.to_dict(), record=False)
    add_section(root, "genrec", {"dir": "genrec", "beam": 12}, record=False)
    with pytest.raises(ArtifactError, match=r"references semantic_ids/sids\.npy but does not list it in files"):
        verify_artifact_set(root)


def test_a_malformed_generative_section_is_refused_at_verify(tiny_artifacts: TinyArtifacts, tmp_path: Path) -> None:
    root = copy_set(tiny_artifacts, tmp_path)
    sid = SidSpec(n_levels=2, codebook_size=8, collision_capacity=4)
    add_section(root, "semantic_ids", sid.to_dict())
    add_section(root, "genrec", {"dir": "genrec", "beam": "wide"})
    with pytest.raises(ArtifactError, match="cannot load semantic IDs / generative model: malformed genrec"):
        verify_artifact_set(root)


def test_without_a_genrec_section_the_set_serves_dense_only(tiny_artifacts: TinyArtifacts, tmp_path: Path) -> None:
    root = copy_set(tiny_artifacts, tmp_path)
    add_section(root, "semantic_ids", {"anything": json.dumps([1, 2])})  # one of the two sections: not the feature
    art = load_artifacts(root, FakeEncoder(dim=TEXT_DIM), variant="int8", device="cpu")
    assert GENERATIVE not in art.features and art.features.names == []
    assert TRANSITIONS_FILE not in art.manifest.files


def test_a_set_with_every_feature_lists_exactly_their_files(tiny_artifacts: TinyArtifacts, tmp_path: Path) -> None:
    """The manifest names only the core files; each feature's spec names its own, and verify checks both."""
    root = copy_set(tiny_artifacts, tmp_path)
    core = Manifest.read(root).referenced_paths()
    assert core == [
        "encoder/encoder.onnx",
        "encoder/encoder.int8.onnx",
        "items/item_ids.json",
        "items/text_vectors.npy",
        "catalog/items.jsonl",
        "seqrec/user_tower.onnx",
        "seqrec/id_embeddings.npy",
        "seqrec/text_projection.npz",
    ]
    profile = {"dim": TEXT_DIM, "projection": "seqrec/profile_projection.npz", "fields": {"age": "number"}}
    add_section(root, "profile", {**profile, "user_ids": "profiles/user_ids.json", "vectors": "profiles/vectors.npy"})
    add_section(root, "transitions", {"file": TRANSITIONS_FILE, "weight": 0.5, "beta": 1.0, "n_items": 48})
    add_section(root, "semantic_ids", SidSpec(n_levels=2, codebook_size=8, collision_capacity=4).to_dict())
    add_section(root, "genrec", {"dir": "genrec/", "beam": 12})
    manifest = Manifest.read(root)
    assert all(has_feature(f, manifest) for f in FEATURES)
    files = feature_paths(FEATURES, manifest)
    assert files == [
        "seqrec/profile_projection.npz",
        "profiles/user_ids.json",
        "profiles/vectors.npy",
        TRANSITIONS_FILE,
        "semantic_ids/sids.npy",
        "semantic_ids/codec.npz",
        "genrec/config.json",
    ]
    assert manifest.referenced_paths() == core  # the feature sections add nothing to the core list
    with pytest.raises(ArtifactError, match=r"references seqrec/profile_projection\.npz but does not list it"):
        verify_artifact_set(root)
    for rel in files:  # every feature file present and hashed: the set verifies
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rel.encode())
    add_section(root, "genrec", {"dir": "genrec/", "beam": 12})  # re-records the hashes
    assert set(files) <= set(verify_artifact_set(root).files)
    (root / "genrec" / "config.json").unlink()
    with pytest.raises(ArtifactError, match=r"artifact file missing: genrec/config\.json"):
        verify_artifact_set(root)


def test_semantic_ids_alone_are_typed_but_not_the_generative_feature(tiny_artifacts: TinyArtifacts) -> None:
    """A set built with semantic IDs and no generative model (benchmarks.beam decodes over its sids)."""
    manifest = Manifest.read(tiny_artifacts.root)
    assert semantic_ids_spec(manifest) is None
    sid = SidSpec(n_levels=2, codebook_size=8, collision_capacity=4)
    manifest.extra["semantic_ids"] = sid.to_dict()
    assert semantic_ids_spec(manifest) == sid and not has_feature(GENERATIVE, manifest)
    manifest.extra["semantic_ids"] = {"n_levels": "two"}
    with pytest.raises(FeatureError, match="cannot load semantic IDs"):
        semantic_ids_spec(manifest)
