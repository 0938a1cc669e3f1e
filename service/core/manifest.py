"""Artifact manifest: the contract between offline jobs and the service.

An artifact set is a folder ``artifacts/<version>/`` with ``manifest.json``
at its root. Every file path in the manifest is relative to that folder.

Layout written by ``training/jobs/build.py`` (see docs/ARTIFACTS.md)::

    manifest.json
    catalog/items.jsonl            snapshot of the catalog the set was built from
    items/item_ids.json            list[str]; row i of every item matrix is item_ids[i]
    items/text_vectors.npy         [N, encoder.dim] float32, L2-normalised
    encoder/encoder.onnx           fp32 ONNX (inputs input_ids, attention_mask[, token_type_ids];
                                   output last_hidden_state [B, L, H])
    encoder/encoder.int8.onnx      dynamic int8 variant
    encoder/tokenizer/...          Hugging Face tokenizer files
    seqrec/user_tower.onnx         item reps [B, L, D] + mask [B, L] -> user vector [B, D]
    seqrec/id_embeddings.npy       [N, D] float32 (row = item index, 0 for items never trained)
    seqrec/text_projection.npz     W [encoder.dim, D], b [D]
    seqrec/profile_projection.npz  only with user profiles: W [encoder.dim, D], b [D], mean [encoder.dim]
    profiles/user_ids.json         only with user profiles: users with a users.jsonl row
    profiles/vectors.npy           only with user profiles: [U, encoder.dim] their profile vectors
                                   (described by extra["profile"], see service/core/profiles.py)
    seqrec/transitions.npz         only with the transition prior: item -> next item counts
                                   (service/core/transitions.py), described by extra["transitions"]
                                   (:class:`TransitionSpec`: file, weight, beta, validation metrics)

Nothing here imports web or ML frameworks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
TRANSITION_SECTION = "transitions"  # key of the transition-prior section in Manifest.extra


class ManifestError(ValueError):
    """The artifact set is missing, malformed or does not match its manifest."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


@dataclass
class FileEntry:
    sha256: str
    bytes: int


@dataclass
class GoldenVector:
    """A text and the vector the reference (torch) encoder gives for it."""

    text: str
    vector: list[float]


@dataclass
class EncoderSpec:
    base_model: str
    dim: int
    max_length: int
    pooling: str  # "mean"
    normalize: bool
    onnx_fp32: str
    onnx_int8: str
    tokenizer_dir: str
    # Worst-case cosine of each ONNX variant against torch, measured at export.
    parity: dict[str, float] = field(default_factory=dict)
    # Minimum cosine the service demands of the golden vectors at start.
    golden_min_cosine: dict[str, float] = field(default_factory=lambda: {"fp32": 0.999, "int8": 0.99})
    # How onnx_int8 was quantized (training/encoder/quantize.py): scheme name, op, bits, block size,
    # accuracy level, activation scales and their calibration, MatMuls kept fp32, and the batch
    # invariance measured at export (min cosine of a text alone vs batched). {} = a set exported
    # before this field: dynamic per-tensor int8, whose vectors depend on their batch-mates.
    int8_scheme: dict[str, Any] = field(default_factory=dict)


@dataclass
class SeqRecSpec:
    dim: int
    max_len: int
    user_tower: str
    id_embeddings: str
    text_projection: str
    n_layers: int = 2
    n_heads: int = 2
    trained_items: int = 0
    # Items without a trained ID row (new at reindex, or never in a training sequence) borrow
    # cold_id_scale x the softmax(cosine / temperature)-weighted ID rows of their cold_id_k nearest
    # trained items by text (service.core.seqrec.impute_id_embeddings); 0 = text part alone.
    cold_id_k: int = 0
    cold_id_temperature: float = 0.05
    cold_id_scale: float = 1.0


@dataclass
class TransitionSpec:
    """``extra["transitions"]``: the item -> next item log-prior served with the seqrec scores.

    Dense ranking = ``u . v_j + weight * log p(j | last history item)``; ``weight`` was chosen on the
    validation cases (``val_by_weight``: NDCG@10 per candidate weight, the prior counted over the training
    sequences there); the served counts are the build's ``markov_counts`` (default: every interaction).
    """

    file: str
    weight: float
    beta: float
    n_items: int
    val_by_weight: dict[str, float] = field(default_factory=dict)
    # service.core.transitions.PriorShape of the file (also stored in it); {} = first-order
    shape: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransitionSpec:
        try:
            spec = cls(
                file=str(d["file"]),
                weight=float(d["weight"]),
                beta=float(d["beta"]),
                n_items=int(d["n_items"]),
                val_by_weight={str(k): float(v) for k, v in dict(d.get("val_by_weight", {})).items()},
                shape={str(k): float(v) for k, v in dict(d.get("shape", {})).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed {TRANSITION_SECTION} section: {exc}") from exc
        if not (spec.weight >= 0 and spec.beta > 0):  # also rejects NaN
            raise ValueError(f"{TRANSITION_SECTION}: weight must be >= 0 and beta > 0, got {spec.weight}, {spec.beta}")
        return spec


@dataclass
class ItemsSpec:
    count: int
    ids: str
    text_vectors: str
    catalog: str


@dataclass
class Manifest:
    version: str
    created_at: str
    dataset: dict[str, Any]
    encoder: EncoderSpec
    items: ItemsSpec
    seqrec: SeqRecSpec | None = None
    golden: list[GoldenVector] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, FileEntry] = field(default_factory=dict)
    # Sections added by later jobs (e.g. "semantic_ids", "genrec"), kept verbatim.
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    # ---------------------------------------------------------------- io
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, root: Path) -> Path:
        path = root / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        try:
            fmt = int(d.get("format_version", 0))
            if fmt != FORMAT_VERSION:
                raise ManifestError(f"manifest format_version {fmt} is not supported (expected {FORMAT_VERSION})")
            return cls(
                version=str(d["version"]),
                created_at=str(d["created_at"]),
                dataset=dict(d.get("dataset", {})),
                encoder=EncoderSpec(**d["encoder"]),
                items=ItemsSpec(**d["items"]),
                seqrec=SeqRecSpec(**d["seqrec"]) if d.get("seqrec") else None,
                golden=[GoldenVector(**g) for g in d.get("golden", [])],
                metrics=dict(d.get("metrics", {})),
                files={k: FileEntry(**v) for k, v in d.get("files", {}).items()},
                extra=dict(d.get("extra", {})),
                format_version=fmt,
            )
        except (KeyError, TypeError) as exc:
            raise ManifestError(f"malformed manifest: {exc}") from exc

    @classmethod
    def read(cls, root: Path) -> Manifest:
        path = root / MANIFEST_NAME
        if not path.is_file():
            raise ManifestError(f"no {MANIFEST_NAME} in {root}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path}: invalid JSON ({exc})") from exc
        return cls.from_dict(data)

    # ---------------------------------------------------------- checksums
    def record_files(self, root: Path) -> None:
        """Hash every file under ``root`` (except the manifest) into ``files``."""
        self.files = {}
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.name != MANIFEST_NAME and not p.name.endswith(".tmp"):
                rel = p.relative_to(root).as_posix()
                self.files[rel] = FileEntry(sha256=sha256_file(p), bytes=p.stat().st_size)

    def verify_files(self, root: Path, feature_files: Iterable[str] = ()) -> None:
        """Raise :class:`ManifestError` if any listed file is missing or altered, or if a file the set
        reads is not listed: its core files (:meth:`referenced_paths`) and ``feature_files``, those its
        served features read (``service.features.feature_paths``: each feature's typed spec names them;
        this module does not know the features)."""
        if not self.files:
            raise ManifestError("manifest lists no files")
        for rel, entry in self.files.items():
            p = root / rel
            if not p.is_file():
                raise ManifestError(f"artifact file missing: {rel}")
            if p.stat().st_size != entry.bytes or sha256_file(p) != entry.sha256:
                raise ManifestError(f"artifact file does not match its sha256: {rel}")
        for rel in [*self.referenced_paths(), *feature_files]:
            if rel not in self.files:
                raise ManifestError(f"manifest references {rel} but does not list it in files")

    def referenced_paths(self) -> list[str]:
        """The core files of the set (encoder, items, seqrec model). Files of the optional served
        features (profiles, transition prior, generative model) come from their own specs:
        ``service.features.feature_paths(FEATURES, manifest)``."""
        paths = [
            self.encoder.onnx_fp32,
            self.encoder.onnx_int8,
            self.items.ids,
            self.items.text_vectors,
            self.items.catalog,
        ]
        if self.seqrec is not None:
            paths += [self.seqrec.user_tower, self.seqrec.id_embeddings, self.seqrec.text_projection]
        return paths


def latest_version(artifacts_dir: Path) -> Path:
    """The newest complete artifact set under ``artifacts_dir``.

    ``artifacts_dir/LATEST`` (a file holding a version name) wins when present;
    otherwise the lexicographically last folder holding a manifest.
    """
    pointer = artifacts_dir / "LATEST"
    if pointer.is_file():
        name = pointer.read_text().strip()
        cand = artifacts_dir / name
        if (cand / MANIFEST_NAME).is_file():
            return cand
        raise ManifestError(f"{pointer} names {name!r}, which has no {MANIFEST_NAME}")
    versions = sorted(p for p in artifacts_dir.glob("*") if (p / MANIFEST_NAME).is_file())
    if not versions:
        raise ManifestError(f"no artifact set under {artifacts_dir} (run `make demo-build` or `recsvc-train build`)")
    return versions[-1]
