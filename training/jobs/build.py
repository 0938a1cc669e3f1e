"""End-to-end artifact build: dataset folder -> artifacts/<version>/ -> Qdrant.

Stages (one log line each, progress bars inside):
  1. load + validate the dataset folder (shared layout)
  2. export the frozen encoder to ONNX fp32 + int8 with parity checks and golden vectors
  3. embed every item's text with the torch reference encoder
  4. train the sequential recommender (ID + text fusion) on the leave-one-out split; with
     ``seqrec.use_profile`` first verbalise and embed every ``users.jsonl`` profile, train with them,
     and export the profile projection + per-user vectors (manifest ``extra["profile"]``)
  4a. with ``markov_prior``: the item -> next item transition prior over every interaction of the
     dataset (``markov_counts``), its weight picked on validation (``bench_seqrec.markov_eval``), saved as
     ``seqrec/transitions.npz`` (manifest ``extra["transitions"]``)
  4b. optional (``with_semantic_ids`` / ``with_genrec``): semantic IDs by RQ-VAE over the
     text vectors, then the generative (TIGER-style) model; both land in ``Manifest.extra``
  5. write the manifest (every file with its sha256, dims, metrics) and point LATEST at it
  6. push item vectors to a new Qdrant collection and swap the alias

The set is written into a hidden staging folder and renamed into place only
when complete, so a crash never leaves a half-built version that the service
would pick up.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from service.core.index import CatalogIndex, open_client
from service.core.manifest import TRANSITION_SECTION, ItemsSpec, Manifest, TransitionSpec
from service.core.profiles import PROFILE_SECTION, ProfileSpec
from service.core.seqrec import ColdIdRule, artifact_item_vectors, load_item_norm, load_text_projection
from service.core.transitions import PriorShape, TransitionPrior
from service.semantic_ids.decoder import GENREC_DIR
from training.checkpoint import BEST_NAME, load_weights
from training.config import BASE_MODEL_NAME, BuildConfig
from training.data.loader import load_dataset
from training.data.split import Split, all_sequences, leave_one_out, train_item_counts
from training.encoder.embed import embed_items
from training.encoder.export import export_encoder
from training.encoder.profile_vectors import ProfileInputs, profile_inputs, torch_embedder
from training.evaluation.prior import markov_eval
from training.jobs.train_genrec import train_genrec
from training.loop import resolve_device
from training.semantic_ids.build import build_semantic_ids
from training.seqrec.model import build_model, cold_id_rule, with_cold_ids
from training.seqrec.train import SeqRecResult, train_seqrec

logger = logging.getLogger(__name__)

PROFILE_USER_IDS = "profiles/user_ids.json"
PROFILE_VECTORS = "profiles/vectors.npy"
TRANSITIONS_FILE = "transitions.npz"


@dataclass
class BuildResult:
    root: Path
    manifest: Manifest
    stage_seconds: dict[str, float]
    collection: str | None


def _version_name(dataset_name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in dataset_name) or "data"
    return f"{stamp}-{safe}"


class _Stages:
    """Times each stage and logs one line when it starts and one when it ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def run(self, name: str) -> Iterator[None]:
        n = len(self.seconds) + 1
        logger.info("stage %d: %s ...", n, name)
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.seconds[name] = round(dt, 2)
        logger.info("stage %d: %s done in %.1fs", n, name, dt)


def build(cfg: BuildConfig, name: str | None = None) -> BuildResult:
    data_dir = Path(cfg.data)
    if cfg.embed.max_length != cfg.export.max_length:
        # Stored vectors must be what the served encoder computes for the same text.
        raise ValueError(
            f"embed.max_length ({cfg.embed.max_length}) must equal export.max_length ({cfg.export.max_length})"
        )
    stages = _Stages()
    t_start = time.perf_counter()

    with stages.run("load dataset"):
        dataset = load_dataset(data_dir, allow_empty_titles=cfg.allow_empty_titles)
        split = leave_one_out(dataset)
        if cfg.seqrec.use_profile and dataset.users is None:
            raise ValueError(
                f"seqrec.use_profile is set but {data_dir} has no users.jsonl: add the user profiles "
                "or set seqrec.use_profile: false"
            )
    version = cfg.version or _version_name(name or dataset.name)
    out_root = Path(cfg.out)
    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / version
    if final.exists():
        raise FileExistsError(f"artifact version {version!r} already exists at {final}")
    staging = out_root / f".{version}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)

    try:
        (staging / "catalog").mkdir()
        shutil.copyfile(data_dir / "items.jsonl", staging / "catalog" / "items.jsonl")
        (staging / "items").mkdir()
        (staging / "items" / "item_ids.json").write_text(json.dumps(dataset.item_ids))

        with stages.run("export encoder (ONNX fp32 + int8, parity, golden vectors)"):
            enc_spec, golden = export_encoder(staging, cfg.export)
            if cfg.export.model_dir is None:
                enc_spec.base_model = BASE_MODEL_NAME

        with stages.run(f"embed {dataset.n_items} items"):
            model_dir = Path(cfg.export.model_dir) if cfg.export.model_dir else None
            text_vectors = embed_items(dataset.items, cfg.embed, model_dir=model_dir)  # [N, 384]
            np.save(staging / "items" / "text_vectors.npy", text_vectors.astype(np.float32))

        profiles: ProfileInputs | None = None
        if cfg.seqrec.use_profile:
            with stages.run("embed user profiles"):
                profiles = profile_inputs(dataset, torch_embedder(cfg.embed, model_dir))

        with stages.run("train seqrec" + (" with user profiles" if profiles is not None else "")):
            seq = train_seqrec(
                split,
                text_vectors if cfg.seqrec.use_text else None,
                cfg.seqrec,
                staging / "seqrec",
                profiles=None if profiles is None else profiles.train,
            )

        extra, gen_metrics = generative_stages(cfg, split, text_vectors, staging, stages)
        if cfg.markov_prior:
            with stages.run("transition prior (item -> next item, weight on validation)"):
                spec, mc_metrics = transition_stage(
                    cfg,
                    split,
                    text_vectors,
                    staging,
                    seq.spec.id_embeddings,
                    None if profiles is None else profiles.train,
                )
                extra[TRANSITION_SECTION] = spec.to_dict()
                gen_metrics["seqrec_transition_prior"] = mc_metrics
        if profiles is not None:
            extra[PROFILE_SECTION] = write_profile_artifacts(staging, profiles, seq).to_dict()

        with stages.run("write manifest"):
            manifest = Manifest(
                version=version,
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                dataset={
                    "name": dataset.name,
                    "source": str(data_dir.resolve()),
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
                metrics={"seqrec": seq.metrics, "seqrec_train_seconds": round(seq.train_seconds, 1), **gen_metrics},
                extra=extra,
            )
            manifest.metrics["build_seconds"] = dict(stages.seconds)
            manifest.record_files(staging)
            manifest.write(staging)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (out_root / "LATEST").write_text(version + "\n")

    collection: str | None = None
    if cfg.push:
        with stages.run("push to Qdrant"):
            collection = push(final, manifest, cfg)
    total = time.perf_counter() - t_start
    logger.info(
        "build %s finished in %.1fs (%s)", version, total, ", ".join(f"{k}: {v}s" for k, v in stages.seconds.items())
    )
    return BuildResult(root=final, manifest=manifest, stage_seconds=dict(stages.seconds), collection=collection)


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
    stages: _Stages | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Optional stages: semantic IDs, then the generative model. -> (manifest extra, metrics)."""
    stages = stages or _Stages()
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


def push(root: Path, manifest: Manifest, cfg: BuildConfig) -> str:
    """Index the artifact set's catalog into a new collection and swap the alias."""
    dataset = load_dataset(root / "catalog", require_sequences=False, allow_empty_titles=True)
    text_vectors = np.load(root / manifest.items.text_vectors)
    seqrec_vectors = None
    if manifest.seqrec is not None:
        w, b = load_text_projection(root / manifest.seqrec.text_projection)
        ids = np.load(root / manifest.seqrec.id_embeddings)
        spec = manifest.seqrec
        rule = ColdIdRule(spec.cold_id_k, spec.cold_id_temperature, spec.cold_id_scale)
        norm = load_item_norm(root / manifest.seqrec.text_projection)
        seqrec_vectors = artifact_item_vectors(text_vectors, ids, w, b, rule, norm)  # what the service scores
    client = open_client(cfg.qdrant_url, cfg.qdrant_path)
    try:
        index = CatalogIndex(client, alias=cfg.collection_alias)
        new = index.build(
            dataset.items,
            text_vectors,
            seqrec_vectors,
            progress=True,
            metadata={"artifact_version": manifest.version},
        )
        old = index.swap_alias(new)
        if old is not None and old != new:
            index.drop(old)
        logger.info("alias %r -> %s (%d points)", cfg.collection_alias, new, len(dataset.items))
        return new
    finally:
        client.close()
