"""The item -> next item transition prior as a served feature (``extra["transitions"]``): dense (and
hybrid, prior-guided generative) rankings add ``w * log p(j | context)`` to the model's scores
(``service/recommender/markov.py``; the counts are ``service/core/transitions.py``'s)."""

from __future__ import annotations

import numpy as np

from service.config import Settings
from service.core.manifest import TRANSITION_SECTION, Manifest, TransitionSpec
from service.core.transitions import PriorShape, TransitionPrior
from service.features.base import Feature, FeatureError, LoadContext
from service.recommender.markov import ServedPrior


class TransitionsFeature:
    name = "transitions"
    sections = (TRANSITION_SECTION,)
    needs_seqrec = "the manifest has a transitions section but no seqrec model to add it to"

    def spec(self, manifest: Manifest) -> TransitionSpec:
        try:
            return TransitionSpec.from_dict(manifest.extra[TRANSITION_SECTION])
        except ValueError as exc:
            raise FeatureError(str(exc)) from exc

    def paths(self, spec: TransitionSpec) -> list[str]:
        return [spec.file]

    def load(self, spec: TransitionSpec, ctx: LoadContext) -> ServedPrior:
        """One row per catalog item, in-range indices, a well-formed CSR, finite positive counts."""
        n = len(ctx.item_ids)
        try:
            prior = TransitionPrior.load(ctx.root / spec.file)
        except (OSError, ValueError, KeyError) as exc:
            raise FeatureError(f"{spec.file}: {exc}") from exc
        if spec.shape:
            try:
                declared = PriorShape.from_dict(spec.shape)
            except (TypeError, ValueError) as exc:
                raise FeatureError(f"transitions shape: {exc}") from exc
            if declared != prior.shape:
                raise FeatureError(f"{spec.file} was counted with {prior.shape}, the manifest says {declared}")
        if prior.n_items != n or spec.n_items != n:
            raise FeatureError(
                f"{spec.file} has {prior.n_items} item rows (manifest says {spec.n_items}) for {n} items"
            )
        if len(prior.cols) and (prior.cols.min() < 0 or prior.cols.max() >= n):
            raise FeatureError(f"{spec.file} has item indices outside [0, {n})")
        if np.any(np.diff(prior.indptr) < 0) or prior.indptr[0] != 0 or prior.indptr[-1] != len(prior.cols):
            raise FeatureError(f"{spec.file} has a malformed CSR index pointer")
        finite = np.isfinite(prior.counts).all() and np.isfinite(prior.pop).all()
        if not finite or (prior.counts < 0).any() or (prior.pop <= 0).any():
            raise FeatureError(f"{spec.file} has counts or popularity that are negative, zero (pop) or not finite")
        return ServedPrior(prior, ctx.item_ids, spec.weight)

    def serve(self, runtime: ServedPrior, settings: Settings) -> ServedPrior | None:
        # RECSVC_TRANSITION_PRIOR=false serves the model's ranking alone.
        if not settings.transition_prior:
            return None
        runtime.pool = settings.transition_pool
        return runtime


TRANSITIONS: Feature[TransitionSpec, ServedPrior] = TransitionsFeature()
