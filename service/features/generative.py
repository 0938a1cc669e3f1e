"""Generative recommendation as a served feature (``extra["semantic_ids"]`` + ``extra["genrec"]``): the
semantic-ID table and codec, and the encoder-decoder decoded by constrained beam search
(``service/recommender/generative.py``). Without it, modes ``generative`` and ``hybrid`` answer 422
``mode_unavailable``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from service.config import Settings
from service.core.manifest import Manifest
from service.core.sid import SidError, SidSpec
from service.features.base import Feature, FeatureError, LoadContext
from service.recommender.hybrid import HybridWeights

if TYPE_CHECKING:  # torch: imported when a set with a generative model is loaded, not before
    from service.recommender.generative import GenerativeRuntime

SID_SECTION = "semantic_ids"
GENREC_SECTION = "genrec"
_CANNOT = "cannot load semantic IDs / generative model"


@dataclass(frozen=True)
class GenrecSpec:
    """The ``genrec`` section of the manifest: the saved model's folder, the beam width, how many
    history items a request feeds the encoder, and the weight of prior-guided decoding (0 = none)."""

    dir: str
    beam: int = 20
    max_items: int = 20
    prior_weight: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GenrecSpec:
        try:
            return cls(
                dir=str(d["dir"]),
                beam=int(d.get("beam", 20)),
                max_items=int(d.get("max_items", 20)),
                prior_weight=float(d.get("prior_weight", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SidError(f"malformed genrec manifest section: {exc}") from exc


@dataclass(frozen=True)
class GenerativeSpec:
    semantic_ids: SidSpec
    genrec: GenrecSpec


def semantic_ids_spec(manifest: Manifest) -> SidSpec | None:
    """The typed ``semantic_ids`` section alone, None without one. A set built with semantic IDs but no
    generative model has it without being the feature (``benchmarks.beam`` decodes over its sids)."""
    if SID_SECTION not in manifest.extra:
        return None
    try:
        return SidSpec.from_dict(manifest.extra[SID_SECTION])
    except (ValueError, KeyError) as exc:
        raise FeatureError(f"{_CANNOT}: {exc}") from exc


class GenerativeFeature:
    name = "generative"
    sections = (SID_SECTION, GENREC_SECTION)
    needs_seqrec = None  # decodes from semantic IDs alone

    def spec(self, manifest: Manifest) -> GenerativeSpec:
        try:
            return GenerativeSpec(
                SidSpec.from_dict(manifest.extra[SID_SECTION]), GenrecSpec.from_dict(manifest.extra[GENREC_SECTION])
            )
        except (ValueError, KeyError) as exc:
            raise FeatureError(f"{_CANNOT}: {exc}") from exc

    def paths(self, spec: GenerativeSpec) -> list[str]:
        model_config = f"{spec.genrec.dir.rstrip('/')}/config.json"  # the saved model's folder (save_pretrained)
        return [spec.semantic_ids.sids, spec.semantic_ids.codec, model_config]

    def load(self, spec: GenerativeSpec, ctx: LoadContext) -> GenerativeRuntime:
        """The sid table has one row per catalog item (and the model one item-ID vector per item, if any)."""
        from service.recommender.generative import GenerativeRuntime

        try:
            return GenerativeRuntime.from_specs(ctx.root, spec.semantic_ids, spec.genrec, ctx.item_ids, ctx.device)
        except (OSError, ValueError, KeyError) as exc:
            raise FeatureError(f"{_CANNOT}: {exc}") from exc

    def serve(self, runtime: GenerativeRuntime, settings: Settings) -> GenerativeRuntime:
        runtime.torch_threads = settings.torch_threads  # intra-op threads of each decode
        runtime.hybrid_weights = HybridWeights(settings.hybrid_prior_weight, settings.hybrid_generative_weight)
        return runtime


GENERATIVE: Feature[GenerativeSpec, GenerativeRuntime] = GenerativeFeature()
