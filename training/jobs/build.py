"""`recsvc-train build`: end-to-end artifact build, dataset folder -> artifacts/<version>/ -> Qdrant.

Stages (one log line each, progress bars inside; :mod:`training.pipeline`):
  1. load + validate the dataset folder (shared layout)
  2. export the frozen encoder to ONNX fp32 + int8 with parity checks and golden vectors
  3. embed every item's text with the torch reference encoder
  4. train the sequential recommender (ID + text fusion) on the leave-one-out split; with
     ``seqrec.use_profile`` first verbalise and embed every ``users.jsonl`` profile, train with them,
     and export the profile projection + per-user vectors (manifest ``extra["profile"]``)
  4a. with ``markov_prior``: the item -> next item transition prior over every interaction of the
     dataset (``markov_counts``), its weight picked on validation (``markov_eval``), saved as
     ``seqrec/transitions.npz`` (manifest ``extra["transitions"]``)
  4b. optional (``with_semantic_ids`` / ``with_genrec``): semantic IDs by RQ-VAE over the
     text vectors, then the generative (TIGER-style) model; both land in ``Manifest.extra``
  5. write the manifest (every file with its sha256, dims, metrics) and point LATEST at it
  6. push item vectors to a new Qdrant collection and swap the alias

The set is written into a hidden staging folder and renamed into place only
when complete, so a crash never leaves a half-built version that the service
would pick up. The command line is parsed in ``training/cli/build.py``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from service.core.manifest import TRANSITION_SECTION, Manifest
from service.core.profiles import PROFILE_SECTION
from training.config import BuildConfig
from training.encoder.profile_vectors import ProfileInputs, profile_inputs, torch_embedder
from training.pipeline.push import push
from training.pipeline.stages import (
    build_manifest,
    check_config,
    copy_catalog,
    encoder_dir,
    export_served_encoder,
    generative_stages,
    item_text_vectors,
    load_split,
    transition_stage,
    write_profile_artifacts,
)
from training.pipeline.staging import Stages, staged_version, version_name
from training.seqrec.train import train_seqrec

logger = logging.getLogger(__name__)


@dataclass
class BuildResult:
    root: Path
    manifest: Manifest
    stage_seconds: dict[str, float]
    collection: str | None


def build(cfg: BuildConfig, name: str | None = None) -> BuildResult:
    check_config(cfg)
    stages = Stages()
    t_start = time.perf_counter()
    with stages.run("load dataset"):
        dataset, split = load_split(cfg)
    version = cfg.version or version_name(name or dataset.name)
    out_root = Path(cfg.out)
    with staged_version(out_root, version) as staging:
        copy_catalog(Path(cfg.data), dataset, staging)
        with stages.run("export encoder (ONNX fp32 + int8, parity, golden vectors)"):
            exported = export_served_encoder(cfg, staging)
        with stages.run(f"embed {dataset.n_items} items"):
            text_vectors = item_text_vectors(cfg, dataset, staging)  # [N, 384]
        profiles: ProfileInputs | None = None
        if cfg.seqrec.use_profile:
            with stages.run("embed user profiles"):
                profiles = profile_inputs(dataset, torch_embedder(cfg.embed, encoder_dir(cfg)))
        train_profiles = None if profiles is None else profiles.train
        with stages.run("train seqrec" + (" with user profiles" if profiles is not None else "")):
            vectors = text_vectors if cfg.seqrec.use_text else None
            seq = train_seqrec(split, vectors, cfg.seqrec, staging / "seqrec", profiles=train_profiles)
        extra, gen_metrics = generative_stages(cfg, split, text_vectors, staging, stages)
        if cfg.markov_prior:
            with stages.run("transition prior (item -> next item, weight on validation)"):
                ids = seq.spec.id_embeddings
                spec, mc_metrics = transition_stage(cfg, split, text_vectors, staging, ids, train_profiles)
                extra[TRANSITION_SECTION] = spec.to_dict()
                gen_metrics["seqrec_transition_prior"] = mc_metrics
        if profiles is not None:
            extra[PROFILE_SECTION] = write_profile_artifacts(staging, profiles, seq).to_dict()
        with stages.run("write manifest"):
            optional = (extra, gen_metrics)
            manifest = build_manifest(staging, version, cfg, dataset, exported, seq, optional, stages.seconds)
    collection: str | None = None
    if cfg.push:
        with stages.run("push to Qdrant"):
            collection = push(out_root / version, manifest, cfg)
    total = time.perf_counter() - t_start
    logger.info(
        "build %s finished in %.1fs (%s)", version, total, ", ".join(f"{k}: {v}s" for k, v in stages.seconds.items())
    )
    return BuildResult(out_root / version, manifest, dict(stages.seconds), collection)
