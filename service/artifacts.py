"""Load an artifact set and refuse it unless it is whole and matches the live models.

Checks, in order (each failure is an :class:`ArtifactError` naming the file and
the fix): manifest readable; every listed file present with its sha256 (all of
them hashed before any is loaded: :func:`verify_artifact_set`); item
ids unique and as many as the manifest says; text vectors ``[N, encoder.dim]``
and finite; the catalog snapshot holds exactly those ids; the golden vectors
reproduced by the *live* encoder above the manifest's threshold for the
variant in use; the seqrec files agree with each other and with the encoder;
with a ``profile`` section, the profile projection fits the encoder and the seqrec model and the
shared verbaliser still writes the recorded golden sentences; with a ``transitions`` section, the
transition prior has one row per item, in-range indices and finite counts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.core.items import Item, item_from_dict
from service.core.manifest import TRANSITION_SECTION, Manifest, ManifestError, TransitionSpec
from service.core.profiles import PROFILE_SECTION, ProfileSpec
from service.core.transitions import PriorShape, TransitionPrior
from service.encoding.base import Encoder, EncoderError
from service.encoding.golden import check_golden
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
    profiles: ProfileRuntime | None = None  # the seqrec model was trained with user profiles
    transitions: ServedPrior | None = None  # item -> next item prior for the dense ranking
    row_of: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.row_of = {iid: i for i, iid in enumerate(self.item_ids)}

    @property
    def version(self) -> str:
        return self.manifest.version

    def ordered_items(self) -> list[Item]:
        return [self.items[i] for i in self.item_ids]


def _fail(root: Path, message: str) -> ArtifactError:
    return ArtifactError(f"artifact set {root}: {message}")


def verify_artifact_set(root: Path) -> Manifest:
    """Read the manifest of ``root`` and check every listed file's size and sha256, before any of
    them is loaded (an altered ONNX or numpy file is refused, never parsed)."""
    try:
        manifest = Manifest.read(root)
        manifest.verify_files(root)
    except ManifestError as exc:
        raise _fail(root, f"{exc} (rebuild it with `make demo-build` or `recsvc-train build`)") from exc
    return manifest


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
    ``verified``: the manifest :func:`verify_artifact_set` returned for ``root`` (its files are not hashed again)."""
    manifest = verified if verified is not None else verify_artifact_set(root)

    # ---- items
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

    # ---- text vectors against the live encoder
    if manifest.encoder.dim != encoder.dim:
        raise _fail(root, f"encoder dim {manifest.encoder.dim} in the manifest, the live encoder has {encoder.dim}")
    try:
        text_vectors = np.load(root / manifest.items.text_vectors, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise _fail(root, f"{manifest.items.text_vectors}: {exc}") from exc
    if text_vectors.shape != (len(item_ids), encoder.dim):
        raise _fail(
            root,
            f"{manifest.items.text_vectors} has shape {text_vectors.shape}, expected ({len(item_ids)}, {encoder.dim})",
        )
    text_vectors = np.ascontiguousarray(text_vectors, dtype=np.float32)  # [N, T]
    if not np.isfinite(text_vectors).all():
        raise _fail(root, f"{manifest.items.text_vectors} contains NaN or inf")

    # ---- catalog snapshot
    try:
        catalog = read_catalog(root / manifest.items.catalog)
    except CatalogError as exc:
        raise _fail(root, str(exc)) from exc
    items = {it.item_id: it for it in catalog}
    if set(items) != set(item_ids):
        missing = sorted(set(item_ids) - set(items))[:5]
        extra = sorted(set(items) - set(item_ids))[:5]
        raise _fail(root, f"catalog and item ids differ (missing from catalog: {missing}, not in ids: {extra})")

    # ---- golden vectors through the live encoder
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

    # ---- seqrec
    seqrec_vectors: F32 | None = None
    if manifest.seqrec is not None:
        spec = manifest.seqrec
        if seqrec is None:
            try:
                seqrec = SeqRecRuntime.from_manifest(root, spec, device=device, threads=threads)
            except (OSError, ValueError, RuntimeError) as exc:
                raise _fail(root, f"seqrec: {exc}") from exc
        if seqrec.dim != spec.dim:
            raise _fail(root, f"seqrec dim {seqrec.dim}, the manifest says {spec.dim}")
        if seqrec.text_dim != encoder.dim:
            raise _fail(root, f"seqrec text projection expects dim {seqrec.text_dim}, the encoder gives {encoder.dim}")
        if seqrec.id_embeddings.shape[0] != len(item_ids):
            raise _fail(root, f"seqrec has {seqrec.id_embeddings.shape[0]} ID rows for {len(item_ids)} items")
        seqrec.set_reference(text_vectors)  # the trained items' text: neighbours for cold ID rows
        seqrec_vectors = seqrec.item_vectors(text_vectors)  # [N, D]
        if not np.isfinite(seqrec_vectors).all():
            raise _fail(root, "seqrec item vectors contain NaN or inf")
    elif seqrec is not None:
        raise _fail(root, "a seqrec runtime was given but the manifest has no seqrec section")

    # ---- user profiles (models trained with seqrec.use_profile)
    profiles: ProfileRuntime | None = None
    if PROFILE_SECTION in manifest.extra:
        if seqrec is None:
            raise _fail(root, "the manifest has a profile section but no seqrec model to feed it")
        try:
            pspec = ProfileSpec.from_dict(manifest.extra[PROFILE_SECTION])
            profiles = ProfileRuntime.from_manifest(root, pspec)
        except (OSError, ValueError, KeyError) as exc:
            raise _fail(root, f"profile: {exc}") from exc
        if pspec.dim != encoder.dim:
            raise _fail(root, f"profile vectors have dim {pspec.dim}, the live encoder gives {encoder.dim}")
        if profiles.dim != seqrec.dim:
            raise _fail(root, f"profile projection gives dim {profiles.dim}, the seqrec model has {seqrec.dim}")

    # ---- item -> next item transition prior (extra["transitions"])
    transitions: ServedPrior | None = None
    if TRANSITION_SECTION in manifest.extra:
        if seqrec is None:
            raise _fail(root, "the manifest has a transitions section but no seqrec model to add it to")
        transitions = load_transitions(root, manifest.extra[TRANSITION_SECTION], item_ids)

    logger.info(
        "artifact set %s: %d items, text dim %d, seqrec %s",
        manifest.version,
        len(item_ids),
        encoder.dim,
        f"dim {seqrec.dim}" if seqrec is not None else "absent",
    )
    return LoadedArtifacts(
        manifest=manifest,
        root=root,
        item_ids=list(item_ids),
        text_vectors=text_vectors,
        items=items,
        seqrec=seqrec,
        seqrec_vectors=seqrec_vectors,
        golden_min_cosine=float(worst),
        profiles=profiles,
        transitions=transitions,
    )


def load_transitions(root: Path, section: dict[str, Any], item_ids: Sequence[str]) -> ServedPrior:
    """Load and validate ``extra["transitions"]``: one row per item, finite, in-range indices."""
    try:
        spec = TransitionSpec.from_dict(section)
    except ValueError as exc:
        raise _fail(root, str(exc)) from exc
    n = len(item_ids)
    try:
        prior = TransitionPrior.load(root / spec.file)
    except (OSError, ValueError, KeyError) as exc:
        raise _fail(root, f"{spec.file}: {exc}") from exc
    if spec.shape:
        try:
            declared = PriorShape.from_dict(spec.shape)
        except (TypeError, ValueError) as exc:
            raise _fail(root, f"transitions shape: {exc}") from exc
        if declared != prior.shape:
            raise _fail(root, f"{spec.file} was counted with {prior.shape}, the manifest says {declared}")
    if prior.n_items != n or spec.n_items != n:
        raise _fail(root, f"{spec.file} has {prior.n_items} item rows (manifest says {spec.n_items}) for {n} items")
    if len(prior.cols) and (prior.cols.min() < 0 or prior.cols.max() >= n):
        raise _fail(root, f"{spec.file} has item indices outside [0, {n})")
    if np.any(np.diff(prior.indptr) < 0) or prior.indptr[0] != 0 or prior.indptr[-1] != len(prior.cols):
        raise _fail(root, f"{spec.file} has a malformed CSR index pointer")
    finite = np.isfinite(prior.counts).all() and np.isfinite(prior.pop).all()
    if not finite or (prior.counts < 0).any() or (prior.pop <= 0).any():
        raise _fail(root, f"{spec.file} has counts or popularity that are negative, zero (pop) or not finite")
    return ServedPrior(prior, item_ids, spec.weight)


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
