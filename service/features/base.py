"""The protocol every served feature follows: manifest spec -> verify + load -> runtime for the Recommender.

A served feature is an optional part of an artifact set that changes what ``/recommend`` does (user
profiles, the item -> next item transition prior, the generative model over semantic IDs). Each one
is a :class:`Feature`: it says which ``manifest.extra`` sections mark a set as having it
(:attr:`Feature.sections`), parses that section into a typed spec (:meth:`Feature.spec`), verifies
its files against the catalog and builds the runtime (:meth:`Feature.load`), and applies the
service settings to that runtime (:meth:`Feature.serve`; ``None`` switches it off in this process).
The Recommender reads the runtimes from a :class:`FeatureRuntimes` by feature
(``runtimes.get(PROFILES) -> ProfileRuntime | None``), never from ``manifest.extra``.

Errors are :class:`FeatureError` with a message naming the file or section and what is wrong;
``service.artifacts.load_artifacts`` prefixes the artifact set and raises its ``ArtifactError``
(the service refuses to start, as for every other artifact check).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import numpy as np
import numpy.typing as npt

from service.config import Settings
from service.core.manifest import Manifest
from service.recommender.dense import SeqRecRuntime

SpecT = TypeVar("SpecT")
RuntimeT = TypeVar("RuntimeT")


class FeatureError(ValueError):
    """The feature's section or files cannot be served (the message names which and why)."""


@dataclass(frozen=True)
class LoadContext:
    """What a feature may check itself against: the verified base of the artifact set.

    ``item_ids`` / ``text_vectors`` [N, T] are the set's catalog rows; ``seqrec`` is its dense model
    (None when the set has none); ``device``: ``cpu`` or ``cuda`` (already resolved)."""

    root: Path
    manifest: Manifest
    item_ids: list[str]
    text_vectors: npt.NDArray[np.float32]
    encoder_dim: int
    seqrec: SeqRecRuntime | None
    device: str = "cpu"


class Feature(Protocol[SpecT, RuntimeT]):
    """One served feature. Implementations are stateless singletons registered in ``service.features``."""

    @property
    def name(self) -> str:
        """Short name used in logs and as the runtime's key."""
        ...

    @property
    def sections(self) -> tuple[str, ...]:
        """The ``manifest.extra`` keys whose presence (all of them) means the artifact set has this feature."""
        ...

    @property
    def needs_seqrec(self) -> str | None:
        """None, or the error message when the set has the section but no seqrec model."""
        ...

    def spec(self, manifest: Manifest) -> SpecT:
        """The typed, validated section(s) of a manifest that has :attr:`sections`. FeatureError when malformed."""
        ...

    def paths(self, spec: SpecT) -> list[str]:
        """Files of the set the feature reads (each must be listed, with its sha256, in ``manifest.files``)."""
        ...

    def load(self, spec: SpecT, ctx: LoadContext) -> RuntimeT:
        """Verify the files against the catalog (shapes, ranges, golden values) and build the runtime."""
        ...

    def serve(self, runtime: RuntimeT, settings: Settings) -> RuntimeT | None:
        """Apply the service settings; None when the settings switch the feature off."""
        ...


class FeatureRuntimes:
    """The runtimes of the features an artifact set has, looked up by feature (typed)."""

    def __init__(self, runtimes: Mapping[str, object] | None = None) -> None:
        self._by_name: dict[str, object] = dict(runtimes or {})

    def get(self, feature: Feature[Any, RuntimeT]) -> RuntimeT | None:
        return cast("RuntimeT | None", self._by_name.get(feature.name))

    def with_runtime(self, feature: Feature[Any, RuntimeT], runtime: RuntimeT | None) -> FeatureRuntimes:
        """A copy with ``feature``'s runtime set (None: without it)."""
        out = dict(self._by_name)
        if runtime is None:
            out.pop(feature.name, None)
        else:
            out[feature.name] = runtime
        return FeatureRuntimes(out)

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def __contains__(self, feature: object) -> bool:
        return getattr(feature, "name", None) in self._by_name

    def __repr__(self) -> str:
        return f"FeatureRuntimes({', '.join(self._by_name) or 'none'})"


def has_feature(feature: Feature[Any, Any], manifest: Manifest) -> bool:
    return all(section in manifest.extra for section in feature.sections)


def load_features(features: Iterable[Feature[Any, Any]], ctx: LoadContext) -> FeatureRuntimes:
    """Load, in order, every feature whose sections the manifest has. FeatureError on the first failure."""
    runtimes: dict[str, object] = {}
    for feature in features:
        if not has_feature(feature, ctx.manifest):
            continue
        if feature.needs_seqrec is not None and ctx.seqrec is None:
            raise FeatureError(feature.needs_seqrec)
        runtimes[feature.name] = feature.load(feature.spec(ctx.manifest), ctx)
    return FeatureRuntimes(runtimes)


def serve_features(
    features: Iterable[Feature[Any, Any]], loaded: FeatureRuntimes, settings: Settings
) -> FeatureRuntimes:
    """The runtimes this process serves: each loaded one after its feature applied ``settings``."""
    served = FeatureRuntimes()
    for feature in features:
        runtime = loaded.get(feature)
        if runtime is not None:
            served = served.with_runtime(feature, feature.serve(runtime, settings))
    return served


def feature_paths(features: Iterable[Feature[Any, Any]], manifest: Manifest) -> list[str]:
    """Every file the manifest's features read (FeatureError when a section is malformed)."""
    paths: list[str] = []
    for feature in features:
        if has_feature(feature, manifest):
            paths += feature.paths(feature.spec(manifest))
    return paths
