"""Served features: optional parts of an artifact set that change what ``/recommend`` does.

Every feature follows one protocol (:class:`~service.features.base.Feature`): a typed manifest
section, a verify-and-load step against the catalog, and a runtime the Recommender reads by feature.
:data:`FEATURES` is the one registry: ``load_artifacts`` loads them in this order, the service applies
its settings to each (``serve``), and the Recommender looks their runtimes up. Adding a feature means
one module here (its spec, ``load``, ``serve``) plus its line below, and the Recommender code that uses
its runtime.
"""

from __future__ import annotations

from typing import Any

from service.features.base import (
    Feature,
    FeatureError,
    FeatureRuntimes,
    LoadContext,
    feature_paths,
    has_feature,
    load_features,
    serve_features,
)
from service.features.generative import GENERATIVE
from service.features.profiles import PROFILES
from service.features.transitions import TRANSITIONS

# The registry, in load order (profiles and the transition prior check themselves against the seqrec model).
FEATURES: tuple[Feature[Any, Any], ...] = (PROFILES, TRANSITIONS, GENERATIVE)

__all__ = [
    "FEATURES",
    "GENERATIVE",
    "PROFILES",
    "TRANSITIONS",
    "Feature",
    "FeatureError",
    "FeatureRuntimes",
    "LoadContext",
    "feature_paths",
    "has_feature",
    "load_features",
    "serve_features",
]
