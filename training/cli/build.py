"""Artifact commands: ``build``, ``push``, ``demo-data``, ``eval-profiles``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from service.core.manifest import Manifest, ManifestError, latest_version
from training.cli.common import add_config_args, add_set_arg, config_from, int_list, log, set_threads
from training.config import BuildConfig, DemoConfig, EvalProfilesConfig, load_config


def build_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The BuildConfig fields ``build``'s dedicated flags set (applied after --config, before --set)."""
    o: dict[str, Any] = {"data": args.data, "out": args.out}
    if args.version:
        o["version"] = args.version
    if args.allow_empty_titles:
        o["allow_empty_titles"] = True
    if args.no_push:
        o["push"] = False
    if args.no_markov_prior:
        o["markov_prior"] = False
    if args.qdrant_path:
        o["qdrant_path"] = args.qdrant_path
    if args.qdrant_url:
        o["qdrant_url"] = args.qdrant_url
    seq: dict[str, Any] = {}
    if args.seqrec_minutes is not None:
        seq["max_minutes"] = args.seqrec_minutes
    if args.seqrec_epochs is not None:
        seq["epochs"] = args.seqrec_epochs
    if args.device:
        seq["device"] = args.device
    if args.use_profile:
        seq["use_profile"] = True
    if args.threads is not None:
        seq["threads"] = args.threads
        o["embed"] = {"threads": args.threads}
    if seq:
        o["seqrec"] = seq
    if args.encoder_dir:
        # A fine-tuned encoder (recsvc-train finetune-encoder ... -> RUN/model) is exported and
        # also embeds the catalog (build reads export.model_dir for both).
        o["export"] = {"model_dir": args.encoder_dir}
    return o


def cmd_build(args: argparse.Namespace) -> int:
    from training.data.loader import DatasetError
    from training.jobs.build import build

    cfg = config_from(args, BuildConfig, build_overrides(args))
    set_threads(cfg.seqrec.threads)
    try:
        result = build(cfg, name=args.name)
    except (DatasetError, FileExistsError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    summary = {
        "version": result.manifest.version,
        "root": str(result.root),
        "collection": result.collection,
        "stage_seconds": result.stage_seconds,
        "metrics": result.manifest.metrics.get("seqrec", {}),
    }
    if "genrec" in result.manifest.metrics:
        summary["genrec_metrics"] = result.manifest.metrics["genrec"]
    print(json.dumps(summary, indent=2))
    return 0


def cmd_eval_profiles(args: argparse.Namespace) -> int:
    from training.jobs.eval_profiles import eval_profiles, markdown_table

    flags = {
        "artifacts": args.artifacts,
        "data": args.data,
        "history_lengths": int_list(args.history_lengths, "--history-lengths"),
        "threads": args.threads,
    }
    cfg = config_from(args, EvalProfilesConfig, flags)
    try:
        result = eval_profiles(cfg)
    except (OSError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(markdown_table(result))
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from training.data.demo import generate_demo

    cfg = config_from(args, DemoConfig, {"n_items": args.items, "n_users": args.users, "seed": args.seed})
    print(generate_demo(Path(args.out), cfg))
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from service.features import FEATURES, FeatureError, feature_paths
    from training.pipeline.push import push

    root = Path(args.artifacts) / args.version if args.version else latest_version(Path(args.artifacts))
    manifest = Manifest.read(root)
    try:  # the core files and every file the set's served features read must be listed and intact
        manifest.verify_files(root, feature_paths(FEATURES, manifest))
    except FeatureError as exc:
        raise ManifestError(f"{root}: {exc}") from exc
    qdrant = {k: v for k, v in {"qdrant_path": args.qdrant_path, "qdrant_url": args.qdrant_url}.items() if v}
    print(push(root, manifest, load_config(BuildConfig, None, qdrant)))
    return 0


def add_parsers(sub: Any) -> None:
    b = sub.add_parser("build", help="build an artifact set from a dataset folder and push it to Qdrant")
    b.add_argument("--data", required=True, help="dataset folder (items.jsonl, sequences.jsonl[, users.jsonl])")
    b.add_argument("--out", default="artifacts", help="artifacts root (default: artifacts)")
    b.add_argument("--name", default=None, help="name used in the version (default: the folder name)")
    b.add_argument("--version", default=None, help="explicit version folder name")
    add_config_args(b, "BuildConfig", "YAML overrides of BuildConfig (see training/configs/)")
    b.add_argument("--allow-empty-titles", action="store_true", help="accept items with an empty title")
    b.add_argument("--no-push", action="store_true", help="write artifacts only, do not touch Qdrant")
    b.add_argument("--qdrant-path", default=None, help="embedded Qdrant folder (default var/qdrant)")
    b.add_argument("--qdrant-url", default=None, help="Qdrant server URL (overrides --qdrant-path)")
    b.add_argument("--seqrec-minutes", type=float, default=None, help="wall-clock budget for seqrec training")
    b.add_argument("--seqrec-epochs", type=int, default=None, help="maximum seqrec epochs")
    b.add_argument("--device", default=None, help="torch device for training (cpu, cuda)")
    b.add_argument("--encoder-dir", default=None, help="HF-format encoder folder (default: the base model)")
    b.add_argument(
        "--use-profile", action="store_true", help="train and serve with users.jsonl profiles (seqrec.use_profile)"
    )
    b.add_argument("--threads", type=int, default=None, help="torch threads, embedding + training (default: config)")
    b.add_argument(
        "--no-markov-prior", action="store_true", help="skip the item -> next item prior stage (markov_prior)"
    )
    b.set_defaults(func=cmd_build)

    ep = sub.add_parser(
        "eval-profiles", help="test metrics of a served model with user profiles: own vs mean profile (serving path)"
    )
    ep.add_argument("--artifacts", required=True, help="artifact set folder built with --use-profile")
    ep.add_argument("--data", required=True, help="the dataset folder it was built from")
    ep.add_argument("--history-lengths", default="1,3,0", help="histories cut to their last L items; 0 = whole")
    ep.add_argument("--threads", type=int, default=EvalProfilesConfig.threads, help="ONNX Runtime threads")
    ep.add_argument("--out", default=None, help="also write the JSON result here")
    add_set_arg(ep, "EvalProfilesConfig")
    ep.set_defaults(func=cmd_eval_profiles)

    d = sub.add_parser("demo-data", help="write the seeded synthetic demo dataset")
    d.add_argument("--out", required=True)
    d.add_argument("--items", type=int, default=DemoConfig.n_items)
    d.add_argument("--users", type=int, default=DemoConfig.n_users)
    d.add_argument("--seed", type=int, default=DemoConfig.seed)
    add_set_arg(d, "DemoConfig")
    d.set_defaults(func=cmd_demo_data)

    u = sub.add_parser("push", help="(re)index an existing artifact set into Qdrant")
    u.add_argument("--artifacts", default="artifacts")
    u.add_argument("--version", default=None)
    u.add_argument("--qdrant-path", default=None)
    u.add_argument("--qdrant-url", default=None)
    u.set_defaults(func=cmd_push)
