"""Short table labels for the results page; the full configuration goes to each section's details.

A results table names a row in at most :data:`MAX_LABEL` characters. The long description of a row (the
registry label of a sequential model, the full ``model`` string of a generative row, the chosen prior shape)
is listed under the table instead, so a reader can scan the table on one screen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from training.seqrec.registry import BASELINES, MC_SUFFIX, model_label

MAX_LABEL = 40
DAGGER = "‡"  # prior / counts include evaluation-time histories (prior_counts: histories)

# The sequential models' short names (training.seqrec.registry holds the long ones).
SEQREC_SHORT: dict[str, str] = {
    "popularity": "Popularity",
    "transitions": "Item→next counts",
    "sasrec": "SASRec (ID only)",
    "fusion": "Fusion (ID + W·text)",
    "fusion_norm": "Fusion at one norm",
    "text_moe": "Text only (MoE)",
    "pq_codes": "PQ codes (VQ-Rec-style)",
    "sasrec_profile": "SASRec + profile",
    "fusion_profile": "Fusion + profile",
}
PRIOR_SHORT = " + item→next prior"


def clip(text: str, limit: int = MAX_LABEL) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut)."""
    return text if len(text) <= limit else text[: limit - 1].rstrip(" ,;") + "…"


def fit(parts: Iterable[str], limit: int = MAX_LABEL, sep: str = ", ") -> str:
    """The leading ``parts`` joined by ``sep``, adding parts in order while the label stays within ``limit``."""
    label = ""
    for part in parts:
        candidate = part if not label else label + sep + part
        if len(candidate) <= limit:
            label = candidate
        elif not label:
            label = clip(part, limit)
    return label


def seqrec_short(model: str) -> str:
    """The short table name of a sequential model key (``+mc``: with the item→next prior)."""
    base = model.removesuffix(MC_SUFFIX)
    label = SEQREC_SHORT.get(base, base)
    return clip(label + PRIOR_SHORT if model.endswith(MC_SUFFIX) else label)


def seqrec_long(model: str) -> str:
    """The full description of a sequential model key (the registry's label)."""
    return model_label(model)


def seqrec_is_dagger(runs: Iterable[Mapping[str, Any]]) -> bool:
    """True when a row's counting model or prior counted the evaluation-time histories (‡)."""
    return any(x.get("markov_counts", x.get("counts")) == "histories" for x in runs)


def fixed_epochs(runs: Iterable[Mapping[str, Any]]) -> bool:
    """True when every run of a row stopped at its epoch count (``--epochs``), not on its wall-clock budget."""
    runs = list(runs)
    return bool(runs) and all(x.get("stop_reason") == "max_epochs" for x in runs)


def seqrec_config(model: str, config: Mapping[str, Any], counts: str | None = None, epochs_bound: bool = False) -> str:
    """A short description of a sequential row's configuration (size, item representation, and what ended
    its runs: ``epochs_bound`` (:func:`fixed_epochs`) names the epoch count, else the wall-clock budget)."""
    base = model.removesuffix(MC_SUFFIX)
    if base in BASELINES:
        return "counted on the training sequences" if counts != "histories" else "counted on all histories ‡"
    if not config:  # runs stored without their configuration: the model's short name
        return seqrec_short(model)
    parts = [f"d{config.get('hidden', '?')} {config.get('n_layers', '?')}L"]
    if config.get("item_encoder") == "pq":
        parts.append(f"PQ {config.get('pq_m')}x{config.get('pq_k')}")
    elif config.get("item_encoder") == "text_moe":
        parts.append(f"{config.get('n_experts')} experts")
    if config.get("item_norm"):
        parts.append(f"norm {config['item_norm']:g}")
    if config.get("use_profile"):
        parts.append("profile")
    if epochs_bound and config.get("epochs"):
        parts.append(f"{config['epochs']} epochs")
    elif config.get("max_minutes"):
        parts.append(f"{config['max_minutes']:g}-min budget")
    return fit(parts)


# Phrases of a generative row's model string and their short tags, most telling first.
_GENREC_TAGS: tuple[tuple[str, str], ...] = (
    ("distilled from the dense model", "distilled"),
    ("item ID input", "item IDs"),
    ("sids from text + co-occurrence", "CF sids"),
    ("trained with the item→next prior", "prior-trained"),
    ("user token", "user token"),
)


def genrec_short(row: Mapping[str, Any]) -> str:
    """A generative row's short name: layers, the inputs that set it apart, prior weight, epochs."""
    model = str(row.get("model", ""))
    arch = re.search(r"T5 d(\d+) ff(\d+) (\d+\+\d+)L", model)
    parts = [f"T5 {arch.group(3)}L d{arch.group(1)}" if arch else "T5"]
    parts += [tag for phrase, tag in _GENREC_TAGS if phrase in model]
    if row.get("prior_weight") is not None:
        parts.append(f"prior w {row['prior_weight']:g}")
    if row.get("epochs"):
        parts.append(f"{row['epochs']} ep")
    if str(row.get("device", "cpu")) != "cpu":
        parts.append("GPU")
    return fit(parts)


def genrec_long(row: Mapping[str, Any]) -> str:
    """A generative row's full description: its model string and note."""
    model = str(row.get("model", "")).removesuffix(f" {DAGGER}")
    note = row.get("note")
    return model + (f" ({note})" if note else "")
