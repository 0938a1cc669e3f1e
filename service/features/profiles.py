"""User profiles as a served feature (``extra["profile"]``): a model trained with profiles takes the
request's ``profile`` (or a stored ``user_id``'s) as an offset on every history item
(``service/recommender/profiles.py`` explains the runtime, ``service/core/profiles.py`` the section)."""

from __future__ import annotations

from service.config import Settings
from service.core.manifest import Manifest
from service.core.profiles import PROFILE_SECTION, ProfileSpec
from service.features.base import Feature, FeatureError, LoadContext
from service.recommender.profiles import ProfileRuntime


class ProfilesFeature:
    name = "profiles"
    sections = (PROFILE_SECTION,)
    needs_seqrec = "the manifest has a profile section but no seqrec model to feed it"

    def spec(self, manifest: Manifest) -> ProfileSpec:
        try:
            return ProfileSpec.from_dict(manifest.extra[PROFILE_SECTION])
        except (ValueError, KeyError) as exc:
            raise FeatureError(f"profile: {exc}") from exc

    def paths(self, spec: ProfileSpec) -> list[str]:
        return spec.paths()

    def load(self, spec: ProfileSpec, ctx: LoadContext) -> ProfileRuntime:
        """The projection fits the encoder and the seqrec model; the verbaliser still writes the golden sentences."""
        assert ctx.seqrec is not None  # needs_seqrec
        try:
            runtime = ProfileRuntime.from_manifest(ctx.root, spec)
        except (OSError, ValueError, KeyError) as exc:
            raise FeatureError(f"profile: {exc}") from exc
        if spec.dim != ctx.encoder_dim:
            raise FeatureError(f"profile vectors have dim {spec.dim}, the live encoder gives {ctx.encoder_dim}")
        if runtime.dim != ctx.seqrec.dim:
            raise FeatureError(f"profile projection gives dim {runtime.dim}, the seqrec model has {ctx.seqrec.dim}")
        return runtime

    def serve(self, runtime: ProfileRuntime, settings: Settings) -> ProfileRuntime:
        runtime.cache_size = settings.profile_cache_size
        return runtime


PROFILES: Feature[ProfileSpec, ProfileRuntime] = ProfilesFeature()
