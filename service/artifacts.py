"""Load an artifact set and refuse it unless it is whole and matches the live models.

Checks, in order (each failure is an :class:`ArtifactError` naming the file and
the fix): manifest readable; every listed file present with its sha256 (all of
them hashed before any is loaded: :func:`verify_artifact_set`); item
ids unique and as many as the manifest says; text vectors ``[N, encoder.dim]``
and finite; the catalog snapshot holds exactly those ids; the golden vectors
reproduced by the *live* encoder above the manifest's threshold for the
variant in use; the seqrec files agree with each other and with the encoder;
then each served feature the set has (``service.features``: its own checks, e.g. with a ``profile``
section, the profile projection fits the encoder and the seqrec model and the shared verbaliser still
writes the recorded golden sentences; with a ``transitions`` section, the transition prior has one row
per item, in-range indices and finite counts; with ``semantic_ids`` + ``genrec``, the sid table and the
generative model load and fit the catalog).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.core.items import Item, item_from_dict
from service.core.manifest import Manifest, ManifestError
from service.encoding.base import Encoder, EncoderError
from service.encoding.golden import check_golden
from service.features import FEATURES, PROFILES, TRANSITIONS
from service.features.base import FeatureError, FeatureRuntimes, LoadContext, feature_paths, load_features
from service.recommender.dense import SeqRecRuntime
from service.recommender.markov import ServedPrior
from service.recommender.profiles import ProfileRuntime

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


class ArtifactError(RuntimeError):
    """The artifact set cannot be served (the message says what is wrong and where)."""


class CatalogError(ValueError):
    """A catalog file (items.jsonl) is malformed; the message names file and line."""


def read_catalog(path: Path) -> list[Item]:
    """Items of a JSON-lines catalog in file order. Raises :class:`CatalogError` naming file:line."""
    if not path.is_file():
        raise CatalogError(f"catalog not found: {path}")
    items: list[Item] = []
    seen: dict[str, int] = {}
    try:
        with path.open("r", encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    item = item_from_dict(row, allow_empty_title=True)
                except (json.JSONDecodeError, ValueError) as exc:
                    raise CatalogError(f"{path}:{lineno}: {exc}") from exc
                if item.item_id in seen:
                    raise CatalogError(
                        f"{path}:{lineno}: duplicate item_id {item.item_id!r} (first on line {seen[item.item_id]})"
                    )
                seen[item.item_id] = lineno
                items.append(item)
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text ({exc})") from exc
    if not items:
        raise CatalogError(f"{path}: no items")
    return items


@dataclass
class LoadedArtifacts:
    manifest: Manifest
    root: Path
    item_ids: list[str]
    text_vectors: F32  # [N, T]
    items: dict[str, Item]  # catalog items by id
    seqrec: SeqRecRuntime | None
    seqrec_vectors: F32 | None  # [N, D]
    golden_min_cosine: float = 1.0  # worst golden cosine measured at load
    # Runtimes of the served features the set has (service.features: profiles, transitions, generative).
    features: FeatureRuntimes = field(default_factory=FeatureRuntimes)
    row_of: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.row_of = {iid: i for i, iid in enumerate(self.item_ids)}

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def profiles(self) -> ProfileRuntime | None:
        """The seqrec model was trained with user profiles (``extra["profile"]``)."""
        return self.features.get(PROFILES)

    @property
    def transitions(self) -> ServedPrior | None:
        """The item -> next item prior for the dense ranking (``extra["transitions"]``)."""
        return self.features.get(TRANSITIONS)

    def ordered_items(self) -> list[Item]:
        return [self.items[i] for i in self.item_ids]


def _fail(root: Path, message: str) -> ArtifactError:
    return ArtifactError(f"artifact set {root}: {message}")


def verify_artifact_set(root: Path) -> Manifest:
    """Read the manifest of ``root`` and check every listed file's size and sha256, before any of
    them is loaded (an altered ONNX or numpy file is refused, never parsed), and that every file a
    served feature reads is listed."""
    try:
        manifest = Manifest.read(root)
        manifest.verify_files(root, feature_paths(FEATURES, manifest))
    except ManifestError as exc:
        raise _fail(root, f"{exc} (rebuild it with `make demo-build` or `recsvc-train build`)") from exc
    except FeatureError as exc:
        raise _fail(root, str(exc)) from exc
    return manifest


def _read_item_ids(root: Path, manifest: Manifest) -> list[str]:
    """Unique string ids, as many as the manifest says."""
    try:
        item_ids = json.loads((root / manifest.items.ids).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise _fail(root, f"{manifest.items.ids}: {exc}") from exc
    if not isinstance(item_ids, list) or not all(isinstance(i, str) for i in item_ids):
        raise _fail(root, f"{manifest.items.ids} must be a JSON list of strings")
    if len(set(item_ids)) != len(item_ids):
        raise _fail(root, f"{manifest.items.ids} has duplicate ids")
    if len(item_ids) != manifest.items.count:
        raise _fail(root, f"{len(item_ids)} item ids but the manifest says {manifest.items.count}")
    return item_ids


def _read_text_vectors(root: Path, manifest: Manifest, n_items: int, dim: int) -> F32:
    """[N, dim] finite float32 text vectors of a set whose encoder is ``dim`` wide (the live encoder's)."""
    if manifest.encoder.dim != dim:
        raise _fail(root, f"encoder dim {manifest.encoder.dim} in the manifest, the live encoder has {dim}")
    rel = manifest.items.text_vectors
    try:
        text_vectors = np.load(root / rel, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise _fail(root, f"{rel}: {exc}") from exc
    if text_vectors.shape != (n_items, dim):
        raise _fail(root, f"{rel} has shape {text_vectors.shape}, expected ({n_items}, {dim})")
    text_vectors = np.ascontiguousarray(text_vectors, dtype=np.float32)  # [N, T]
    if not np.isfinite(text_vectors).all():
        raise _fail(root, f"{rel} contains NaN or inf")
    return text_vectors


def _read_catalog_items(root: Path, manifest: Manifest, item_ids: list[str]) -> dict[str, Item]:
    """The catalog snapshot by id; it must hold exactly ``item_ids``."""
    try:
        catalog = read_catalog(root / manifest.items.catalog)
    except CatalogError as exc:
        raise _fail(root, str(exc)) from exc
    items = {it.item_id: it for it in catalog}
    if set(items) != set(item_ids):
        missing = sorted(set(item_ids) - set(items))[:5]
        extra = sorted(set(items) - set(item_ids))[:5]
        raise _fail(root, f"catalog and item ids differ (missing from catalog: {missing}, not in ids: {extra})")
    return items


def _check_golden(root: Path, manifest: Manifest, encoder: Encoder, variant: str) -> float:
    """The worst cosine of the golden vectors reproduced by the live encoder (above the variant's threshold)."""
    if not manifest.golden:
        raise _fail(root, "the manifest has no golden vectors, so the live encoder cannot be checked")
    threshold = manifest.encoder.golden_min_cosine.get(variant)
    if threshold is None:
        raise _fail(root, f"the manifest gives no golden threshold for encoder variant {variant!r}")
    try:
        worst = check_golden(encoder, manifest.golden, min_cosine=threshold)
    except EncoderError as exc:
        raise _fail(root, f"golden vectors not reproduced by the live encoder ({variant}): {exc}") from exc
    logger.info("golden vectors reproduced by the live %s encoder (worst cosine %.5f)", variant, worst)
    return float(worst)


def _load_seqrec(
    root: Path,
    manifest: Manifest,
    text_vectors: F32,
    encoder_dim: int,
    seqrec: SeqRecRuntime | None,
    *,
    device: str,
    threads: int,
) -> tuple[SeqRecRuntime | None, F32 | None]:
    """(the seqrec runtime, its item vectors [N, D]), both None for a set without a seqrec model.
    The model's files agree with each other, with the encoder and with the catalog."""
    spec = manifest.seqrec
    if spec is None:
        if seqrec is not None:
            raise _fail(root, "a seqrec runtime was given but the manifest has no seqrec section")
        return None, None
    if seqrec is None:
        try:
            seqrec = SeqRecRuntime.from_manifest(root, spec, device=device, threads=threads)
        except (OSError, ValueError, RuntimeError) as exc:
            raise _fail(root, f"seqrec: {exc}") from exc
    if seqrec.dim != spec.dim:
        raise _fail(root, f"seqrec dim {seqrec.dim}, the manifest says {spec.dim}")
    if seqrec.text_dim != encoder_dim:
        raise _fail(root, f"seqrec text projection expects dim {seqrec.text_dim}, the encoder gives {encoder_dim}")
    n_items = text_vectors.shape[0]
    if seqrec.id_embeddings.shape[0] != n_items:
        raise _fail(root, f"seqrec has {seqrec.id_embeddings.shape[0]} ID rows for {n_items} items")
    seqrec.set_reference(text_vectors)  # the trained items' text: neighbours for cold ID rows
    seqrec_vectors = seqrec.item_vectors(text_vectors)  # [N, D]
    if not np.isfinite(seqrec_vectors).all():
        raise _fail(root, "seqrec item vectors contain NaN or inf")
    return seqrec, seqrec_vectors


def load_artifacts(
    root: Path,
    encoder: Encoder,
    *,
    variant: str,
    device: str = "auto",
    threads: int = 0,
    seqrec: SeqRecRuntime | None = None,
    verified: Manifest | None = None,
) -> LoadedArtifacts:
    """Verify and load ``root``. ``seqrec`` may be passed prebuilt (else built from the manifest).
    ``verified``: the manifest :func:`verify_artifact_set` returned for ``root`` (its files are not hashed again).
    The served features the set has (``service.features.FEATURES``) are verified and loaded last."""
    manifest = verified if verified is not None else verify_artifact_set(root)
    item_ids = _read_item_ids(root, manifest)
    text_vectors = _read_text_vectors(root, manifest, len(item_ids), encoder.dim)  # [N, T]
    items = _read_catalog_items(root, manifest, item_ids)
    worst = _check_golden(root, manifest, encoder, variant)
    seqrec, seqrec_vectors = _load_seqrec(
        root, manifest, text_vectors, encoder.dim, seqrec, device=device, threads=threads
    )
    ctx = LoadContext(
        root=root,
        manifest=manifest,
        item_ids=list(item_ids),
        text_vectors=text_vectors,
        encoder_dim=encoder.dim,
        seqrec=seqrec,
        device=device,
    )
    try:
        features = load_features(FEATURES, ctx)
    except FeatureError as exc:
        raise _fail(root, str(exc)) from exc
    logger.info(
        "artifact set %s: %d items, text dim %d, seqrec %s, features: %s",
        manifest.version,
        len(item_ids),
        encoder.dim,
        f"dim {seqrec.dim}" if seqrec is not None else "absent",
        ", ".join(features.names) or "none",
    )
    return LoadedArtifacts(
        manifest=manifest,
        root=root,
        item_ids=list(item_ids),
        text_vectors=text_vectors,
        items=items,
        seqrec=seqrec,
        seqrec_vectors=seqrec_vectors,
        golden_min_cosine=worst,
        features=features,
    )


def aligned_seqrec_vectors(
    runtime: SeqRecRuntime, artifacts: LoadedArtifacts, items: Sequence[Item], text_vectors: np.ndarray
) -> F32:
    """Seqrec vectors for ``items`` (any catalog) with text vectors [M, T] -> [M, D].

    Items of the trained artifact set keep their ID embedding (looked up by id,
    so order and removals do not matter); new items get the cold-ID rule's borrowed
    ID row (:meth:`SeqRecRuntime.item_vectors`) or the text part alone.

    O(M): each row is fused from its own text vector and ID row alone
    (:meth:`SeqRecRuntime.item_vectors_at`), so an items-API batch does not pay for the whole artifact
    catalog. :func:`aligned_seqrec_vectors_full` is the former whole-catalog computation, kept as the
    reference the unit tests compare this with.
    """
    id_rows = np.fromiter(
        (-1 if (r := artifacts.row_of.get(it.item_id)) is None else r for it in items), dtype=np.int64, count=len(items)
    )  # [M]
    return runtime.item_vectors_at(np.asarray(text_vectors, dtype=np.float32), id_rows)


def aligned_seqrec_vectors_full(
    runtime: SeqRecRuntime, artifacts: LoadedArtifacts, items: Sequence[Item], text_vectors: np.ndarray
) -> F32:
    """What :func:`aligned_seqrec_vectors` computed before it became O(M): the artifact catalog's text
    with ``items`` laid over it (by id; new ids appended), fused as a whole, the items' rows picked out."""
    n_art = len(artifacts.item_ids)
    rows = [artifacts.row_of.get(it.item_id) for it in items]
    new_pos = [i for i, r in enumerate(rows) if r is None]
    aligned = artifacts.text_vectors.copy()  # [N_art, T]
    for i, r in enumerate(rows):
        if r is not None:
            aligned[r] = text_vectors[i]
    if new_pos:
        aligned = np.concatenate([aligned, text_vectors[new_pos]], axis=0)  # [N_art + M_new, T]
    known = np.zeros(aligned.shape[0], dtype=bool)
    known[:n_art] = True
    fused = runtime.item_vectors(aligned, known)  # [N_art + M_new, D]
    out = np.empty((len(items), runtime.dim), dtype=np.float32)  # [M, D]
    j = 0
    for i, r in enumerate(rows):
        if r is not None:
            out[i] = fused[r]
        else:
            out[i] = fused[n_art + j]
            j += 1
    return out
