"""The sequential models the benchmark knows: their presets over :class:`SeqRecConfig`, table labels and order."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from training.config import SERVED_COLD_ID, SERVED_ITEM_NORM, SeqRecConfig

# Non-neural baselines: counted from the training sequences, deterministic (one seed, no epochs).
BASELINES = frozenset({"popularity", "transitions"})


@dataclass(frozen=True)
class ModelSpec:
    label: str  # as the results table names it
    overrides: dict[str, Any]  # applied to the base SeqRecConfig; empty for non-neural baselines
    uses_text: bool
    uses_profile: bool = False


MODELS: dict[str, ModelSpec] = {
    "popularity": ModelSpec("Popularity", {}, uses_text=False),
    "transitions": ModelSpec("Item -> next item (first-order counts)", {}, uses_text=False),
    # The fused presets pin item_norm, so their rows stay what they were whatever SeqRecConfig's default is.
    "sasrec": ModelSpec(
        "SASRec (ID only)", {"item_encoder": "fused", "use_id": True, "use_text": False, "item_norm": 0.0}, False
    ),
    "fusion": ModelSpec(
        "Fusion (ID + W·text)", {"item_encoder": "fused", "use_id": True, "use_text": True, "item_norm": 0.0}, True
    ),
    # The fusion with every item representation scaled to one L2 norm (SeqRecConfig.item_norm): an item served
    # by its text alone is scored on the trained items' scale.
    "fusion_norm": ModelSpec(
        "Fusion, items at one norm (ID + W·text scaled to norm 4; cold ID from 10 neighbours)",
        {
            "item_encoder": "fused",
            "use_id": True,
            "use_text": True,
            "item_norm": SERVED_ITEM_NORM,
            "cold_id_k": SERVED_COLD_ID[0],
            "cold_id_temperature": SERVED_COLD_ID[1],
            "cold_id_scale": SERVED_COLD_ID[2],
        },
        True,
    ),
    "text_moe": ModelSpec("Text only (whitening MoE, UniSRec-style)", {"item_encoder": "text_moe"}, True),
    "pq_codes": ModelSpec("PQ code lookup (VQ-Rec-style)", {"item_encoder": "pq"}, True),
    "sasrec_profile": ModelSpec(
        "SASRec (ID only) + profile",
        {"item_encoder": "fused", "use_id": True, "use_text": False, "use_profile": True, "item_norm": 0.0},
        False,
        uses_profile=True,
    ),
    "fusion_profile": ModelSpec(
        "Fusion + profile",
        {"item_encoder": "fused", "use_id": True, "use_text": True, "use_profile": True, "item_norm": 0.0},
        True,
        uses_profile=True,
    ),
}


# SeqRecConfig knobs whose default differs from what runs stored before the knob existed used.
LEGACY_SEQREC: dict[str, Any] = {"item_norm": 0.0}


# "<model>+mc": a neural model's ranking plus the first-order transition prior (markov_eval).
MC_SUFFIX = "+mc"


def model_label(model: str) -> str:
    """The results table's name of a model key (a ``+mc`` variant gets its base model's label)."""
    base = model.removesuffix(MC_SUFFIX)
    label = MODELS[base].label if base in MODELS else base
    return label + " + item→next prior" if model.endswith(MC_SUFFIX) else label


# The table's datasets, and the published reference points of ../shared/data/README.md
# (Recall@5, NDCG@5, Recall@10, NDCG@10; standard leave-one-out, full ranking).
DATASETS = ("Beauty", "Sports", "ml-100k", "Scientific")


def model_config(base: SeqRecConfig, model: str, overrides: dict[str, dict[str, Any]] | None = None) -> SeqRecConfig:
    """``base`` with the preset of ``model`` and then the user's per-model overrides applied."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r} (known: {', '.join(MODELS)})")
    cfg = copy.deepcopy(base)
    for key, value in {**MODELS[model].overrides, **(overrides or {}).get(model, {})}.items():
        if not hasattr(cfg, key):
            raise ValueError(f"model {model!r}: unknown SeqRecConfig field {key!r}")
        setattr(cfg, key, value)
    return cfg
