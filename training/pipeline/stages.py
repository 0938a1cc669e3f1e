"""The artifact build's stages between loading the dataset and writing the manifest
(``training/jobs/build.py`` runs them in order, timed by :class:`training.pipeline.staging.Stages`):

- :func:`load_split`: the dataset folder (shared layout) and its leave-one-out split
- :func:`copy_catalog`: the catalog and item ids into the artifact set
- :func:`export_served_encoder`: the frozen encoder as ONNX fp32 + int8, parity checks, golden vectors
- :func:`item_text_vectors`: every item's text with the torch reference encoder (``items/text_vectors.npy``)
- :func:`transition_stage`: the item -> next item transition prior over every interaction of the dataset
  (``BuildConfig.markov_counts``), its shape and weight picked on validation (``markov_eval``), saved as
  ``seqrec/transitions.npz`` (manifest ``extra["transitions"]``)
- :func:`write_profile_artifacts`: per-user profile vectors next to the seqrec files (``extra["profile"]``)
- :func:`generative_stages`: optional semantic IDs by RQ-VAE over the text vectors, then the generative
  (TIGER-style) model; both land in ``Manifest.extra``
- :func:`build_manifest`: every file with its sha256, dims, metrics
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from service.core.manifest import EncoderSpec, GoldenVector, ItemsSpec, Manifest, TransitionSpec
from service.core.profiles import ProfileSpec
from service.core.transitions import PriorShape, TransitionPrior
from service.semantic_ids.decoder import GENREC_DIR
from training.checkpoint import BEST_NAME, load_weights
from training.config import BASE_MODEL_NAME, BuildConfig
from training.data.loader import Dataset, load_dataset
from training.data.split import Split, all_sequences, leave_one_out, train_item_counts
from training.encoder.embed import embed_items
from training.encoder.export import export_encoder
from training.encoder.profile_vectors import ProfileInputs
from training.evaluation.prior import markov_eval
from training.genrec.fit import train_genrec
from training.loop import resolve_device
from training.pipeline.staging import Stages
from training.semantic_ids.build import build_semantic_ids
from training.seqrec.model import build_model, cold_id_rule, with_cold_ids
from training.seqrec.train import SeqRecResult

PROFILE_USER_IDS = "profiles/user_ids.json"
PROFILE_VECTORS = "profiles/vectors.npy"
TRANSITIONS_FILE = "transitions.npz"


def check_config(cfg: BuildConfig) -> None:
    """Refuse a build whose stored vectors would not be what the served encoder computes, or that asks
    for a stage option the build does not run."""
    if cfg.embed.max_length != cfg.export.max_length:
        raise ValueError(
            f"embed.max_length ({cfg.embed.max_length}) must equal export.max_length ({cfg.export.max_length})"
        )
    if cfg.with_genrec and cfg.genrec.distill_weight != 0:
        raise ValueError(
            "genrec.distill_weight is a bench-genrec option (distillation from the dense model,"
            " training/genrec/distill.py): the build does not distil; set it to 0"
        )


def load_split(cfg: BuildConfig) -> tuple[Dataset, Split]:
    """The dataset folder ``cfg.data`` and its leave-one-out split; user profiles when the config uses them."""
    data_dir = Path(cfg.data)
    dataset = load_dataset(data_dir, allow_empty_titles=cfg.allow_empty_titles)
    split = leave_one_out(dataset)
    if cfg.seqrec.use_profile and dataset.users is None:
        raise ValueError(
            f"seqrec.use_profile is set but {data_dir} has no users.jsonl: add the user profiles "
            "or set seqrec.use_profile: false"
        )
    return dataset, split


def copy_catalog(data_dir: Path, dataset: Dataset, root: Path) -> None:
    """``catalog/items.jsonl`` (the dataset's own file) and ``items/item_ids.json`` (row order)."""
    (root / "catalog").mkdir()
    shutil.copyfile(data_dir / "items.jsonl", root / "catalog" / "items.jsonl")
    (root / "items").mkdir()
    (root / "items" / "item_ids.json").write_text(json.dumps(dataset.item_ids))


def encoder_dir(cfg: BuildConfig) -> Path | None:
    """The fine-tuned encoder the build exports and embeds with (None: the base model)."""
    return Path(cfg.export.model_dir) if cfg.export.model_dir else None


def export_served_encoder(cfg: BuildConfig, root: Path) -> tuple[EncoderSpec, list[GoldenVector]]:
    """The frozen encoder as ONNX fp32 + int8 with parity checks and golden vectors under ``root/encoder``."""
    enc_spec, golden = export_encoder(root, cfg.export)
    if cfg.export.model_dir is None:
        enc_spec.base_model = BASE_MODEL_NAME
    return enc_spec, golden


def item_text_vectors(cfg: BuildConfig, dataset: Dataset, root: Path) -> np.ndarray:
    """Every item's text vector by the torch reference encoder, saved as ``items/text_vectors.npy``. -> [N, D]"""
    text_vectors = embed_items(dataset.items, cfg.embed, model_dir=encoder_dir(cfg))  # [N, 384]
    np.save(root / "items" / "text_vectors.npy", text_vectors.astype(np.float32))
    return text_vectors


MARKOV_COUNTS = ("all", "train")  # BuildConfig.markov_counts


def transition_stage(
    cfg: BuildConfig,
    split: Split,
    text_vectors: np.ndarray,
    root: Path,
    id_embeddings: str,
    profiles: np.ndarray | None = None,
) -> tuple[TransitionSpec, dict[str, Any]]:
    """Pick the prior's shape and weight on validation with the trained seqrec model (best weights reloaded
    from its checkpoint), count the transitions ``cfg.markov_counts`` names (default: every interaction of the
    dataset), save ``seqrec/transitions.npz``.
    -> (manifest section, {"weight", "beta", "val", "test", "val_by_weight"})"""
    scfg = cfg.seqrec
    seq_dir = root / Path(id_embeddings).parent
    known = (train_item_counts(split) > 0).astype(np.float32)  # [N]
    model = build_model(
        scfg,
        split.n_items,
        text_vectors if scfg.use_text else None,
        known,
        profile_dim=0 if profiles is None else profiles.shape[1],
    )
    weights, _ = load_weights(seq_dir / BEST_NAME)
    model.load_state_dict(weights)
    model.to(resolve_device(scfg.device))
    model = with_cold_ids(model, cold_id_rule(scfg))  # as served: untrained ID rows borrowed by text
    shapes = [PriorShape.from_dict(d) for d in cfg.markov_shapes]
    if cfg.markov_counts not in MARKOV_COUNTS:
        raise ValueError(f"markov_counts must be one of {MARKOV_COUNTS}, got {cfg.markov_counts!r}")
    counts = "train" if cfg.markov_counts == "train" else "histories"
    result = markov_eval(
        model, split, cfg.markov_weights, cfg.markov_beta, profiles=profiles, shapes=shapes, counts=counts
    )
    shape = PriorShape.from_dict(result["shape"])  # the one validation picked
    seqs = split.train if cfg.markov_counts == "train" else all_sequences(split)
    prior = TransitionPrior.from_sequences(seqs, split.n_items, cfg.markov_beta, shape)
    rel = f"{seq_dir.name}/{TRANSITIONS_FILE}"
    prior.save(root / rel)
    spec = TransitionSpec(
        file=rel,
        weight=float(result["weight"]),
        beta=float(result["beta"]),
        n_items=split.n_items,
        val_by_weight={k: float(v) for k, v in result["val_by_weight"].items()},
        shape=dict(shape.to_dict()),
    )
    return spec, result


def write_profile_artifacts(root: Path, profiles: ProfileInputs, seq: SeqRecResult) -> ProfileSpec:
    """Write the per-user profile vectors next to the seqrec files -> the manifest's profile section."""
    if seq.profile_projection is None:
        raise ValueError("seqrec was trained without profiles: there is no profile projection to serve")
    (root / PROFILE_VECTORS).parent.mkdir(parents=True, exist_ok=True)
    (root / PROFILE_USER_IDS).write_text(json.dumps(profiles.user_ids))
    np.save(root / PROFILE_VECTORS, profiles.vectors.astype(np.float32))  # [U, P]
    return ProfileSpec(
        dim=profiles.dim,
        projection=seq.profile_projection,
        user_ids=PROFILE_USER_IDS,
        vectors=PROFILE_VECTORS,
        fields=dict(profiles.fields),
        n_users=len(profiles.user_ids),
        coverage=profiles.coverage,
        golden=list(profiles.golden),
    )


def generative_stages(
    cfg: BuildConfig,
    split: Split,
    text_vectors: np.ndarray,
    staging: Path,
    stages: Stages | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Optional stages: semantic IDs, then the generative model. -> (manifest extra, metrics)."""
    stages = stages or Stages()
    extra: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    if cfg.with_semantic_ids or cfg.with_genrec:
        with stages.run("semantic ids (RQ-VAE + collision digit)"):
            sid = build_semantic_ids(text_vectors, cfg.semantic_ids, staging, split.train)
            extra["semantic_ids"] = sid.spec.to_dict()
        if cfg.with_genrec:
            with stages.run("train genrec"):
                gen = train_genrec(split, sid.table, cfg.genrec, staging / GENREC_DIR, item_vectors=sid.inputs)
                extra["genrec"] = gen.section
                metrics = {"genrec": gen.metrics, "genrec_train_seconds": round(gen.train_seconds, 1)}
    return extra, metrics


def build_manifest(
    root: Path,
    version: str,
    cfg: BuildConfig,
    dataset: Dataset,
    exported: tuple[EncoderSpec, list[GoldenVector]],
    seq: SeqRecResult,
    optional: tuple[dict[str, Any], dict[str, Any]],
    stage_seconds: dict[str, float],
) -> Manifest:
    """Write the manifest of the artifact set in ``root`` (every file recorded with its sha256).
    ``exported``: the encoder section and golden vectors of the export; ``optional``: the optional stages'
    (manifest extra sections, metrics)."""
    (enc_spec, golden), (extra, metrics) = exported, optional
    manifest = Manifest(
        version=version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        dataset={
            "name": dataset.name,
            "source": str(Path(cfg.data).resolve()),
            "n_items": dataset.n_items,
            "n_users": dataset.n_users,
            "n_interactions": dataset.n_interactions,
            "split": "leave-one-out (last item test, second-to-last validation)",
        },
        encoder=enc_spec,
        items=ItemsSpec(
            count=dataset.n_items,
            ids="items/item_ids.json",
            text_vectors="items/text_vectors.npy",
            catalog="catalog/items.jsonl",
        ),
        seqrec=seq.spec,
        golden=golden,
        metrics={"seqrec": seq.metrics, "seqrec_train_seconds": round(seq.train_seconds, 1), **metrics},
        extra=extra,
    )
    manifest.metrics["build_seconds"] = dict(stage_seconds)
    manifest.record_files(root)
    manifest.write(root)
    return manifest
