"""`recsvc-train`: offline jobs.

    recsvc-train build --data DIR [--out artifacts] [--config FILE.yaml] [--name NAME]
    recsvc-train demo-data --out DIR [--items N --users N --seed S]
    recsvc-train push [--artifacts DIR] [--version V]

`build` accepts any dataset folder in the shared layout (items.jsonl,
sequences.jsonl, optional users.jsonl; see docs/DATA.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from service.core.manifest import Manifest, ManifestError, latest_version
from training.config import BuildConfig, DemoConfig, load_config


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Offline by contract: nothing downloads weights at run time.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _build_overrides(args: argparse.Namespace) -> dict[str, Any]:
    o: dict[str, Any] = {"data": args.data, "out": args.out}
    if args.version:
        o["version"] = args.version
    if args.allow_empty_titles:
        o["allow_empty_titles"] = True
    if args.no_push:
        o["push"] = False
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
    if seq:
        o["seqrec"] = seq
    return o


def cmd_build(args: argparse.Namespace) -> int:
    from training.data.loader import DatasetError
    from training.jobs.build import build

    cfg = load_config(BuildConfig, Path(args.config) if args.config else None, _build_overrides(args))
    try:
        result = build(cfg, name=args.name)
    except (DatasetError, FileExistsError, ValueError) as exc:
        logging.getLogger("recsvc-train").error("%s", exc)
        return 2
    summary = {
        "version": result.manifest.version,
        "root": str(result.root),
        "collection": result.collection,
        "stage_seconds": result.stage_seconds,
        "metrics": result.manifest.metrics.get("seqrec", {}),
    }
    print(json.dumps(summary, indent=2))
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from training.data.demo import generate_demo

    cfg = DemoConfig(n_items=args.items, n_users=args.users, seed=args.seed)
    out = generate_demo(Path(args.out), cfg)
    print(out)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from training.jobs.build import push

    root = Path(args.artifacts) / args.version if args.version else latest_version(Path(args.artifacts))
    manifest = Manifest.read(root)
    manifest.verify_files(root)
    cfg = load_config(
        BuildConfig,
        None,
        {k: v for k, v in {"qdrant_path": args.qdrant_path, "qdrant_url": args.qdrant_url}.items() if v},
    )
    print(push(root, manifest, cfg))
    return 0


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recsvc-train", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--log-level", default="INFO")
    sub = p.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("build", help="build an artifact set from a dataset folder and push it to Qdrant")
    b.add_argument("--data", required=True, help="dataset folder (items.jsonl, sequences.jsonl[, users.jsonl])")
    b.add_argument("--out", default="artifacts", help="artifacts root (default: artifacts)")
    b.add_argument("--name", default=None, help="name used in the version (default: the folder name)")
    b.add_argument("--version", default=None, help="explicit version folder name")
    b.add_argument("--config", default=None, help="YAML overrides of BuildConfig (see training/configs/)")
    b.add_argument("--allow-empty-titles", action="store_true", help="accept items with an empty title")
    b.add_argument("--no-push", action="store_true", help="write artifacts only, do not touch Qdrant")
    b.add_argument("--qdrant-path", default=None, help="embedded Qdrant folder (default var/qdrant)")
    b.add_argument("--qdrant-url", default=None, help="Qdrant server URL (overrides --qdrant-path)")
    b.add_argument("--seqrec-minutes", type=float, default=None, help="wall-clock budget for seqrec training")
    b.add_argument("--seqrec-epochs", type=int, default=None, help="maximum seqrec epochs")
    b.add_argument("--device", default=None, help="torch device for training (cpu, cuda)")
    b.set_defaults(func=cmd_build)

    d = sub.add_parser("demo-data", help="write the seeded synthetic demo dataset")
    d.add_argument("--out", required=True)
    d.add_argument("--items", type=int, default=DemoConfig.n_items)
    d.add_argument("--users", type=int, default=DemoConfig.n_users)
    d.add_argument("--seed", type=int, default=DemoConfig.seed)
    d.set_defaults(func=cmd_demo_data)

    u = sub.add_parser("push", help="(re)index an existing artifact set into Qdrant")
    u.add_argument("--artifacts", default="artifacts")
    u.add_argument("--version", default=None)
    u.add_argument("--qdrant-path", default=None)
    u.add_argument("--qdrant-url", default=None)
    u.set_defaults(func=cmd_push)
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        return int(args.func(args))
    except ManifestError as exc:
        logging.getLogger("recsvc-train").error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
