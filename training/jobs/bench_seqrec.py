"""`recsvc-train bench-seqrec`: the sequential recommendation quality harness (issue 7).

    recsvc-train bench-seqrec --data ../shared/data/Beauty --models popularity,sasrec,fusion --seeds 0,1,2
    recsvc-train bench-seqrec --data ../shared/data/Beauty --config training/configs/seqrec/beauty.yaml --update-docs

Trains and evaluates each model with the standard protocol (leave-one-out, full ranking over all
items, history items not excluded, early stopping on validation NDCG@10; :mod:`training.seqrec.bench`)
and writes ``seqrec.json`` (rows replaced by (dataset, model), so one dataset's run keeps the others)
and ``seqrec_runs.json`` into ``--out`` (default ``var/results``). Nothing else is written unless asked:
``--update-docs`` stores the repository's own results (``docs/results``) and re-renders the ``summary``
and ``seqrec`` sections of ``docs/RESULTS.md`` from them (:mod:`training.reports`); ``recsvc-train report``
renders any results folder into any page.

Item text vectors come from the text encoder through the disk cache of :mod:`training.encoder.cache`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from training.cli.common import add_set_arg
from training.reports.page import DEFAULT_PATH, RESULTS_DIR


def add_parser(sub: Any) -> None:
    q = sub.add_parser("bench-seqrec", help="train + evaluate sequential recommenders; write seqrec.json to --out")
    q.add_argument("--data", required=True, help="dataset folder in the shared layout")
    q.add_argument("--config", default=None, help="YAML overrides of BenchSeqRecConfig (training/configs/seqrec/)")
    add_set_arg(q, "BenchSeqRecConfig")
    q.add_argument("--out", default=None, help="results folder for seqrec.json + seqrec_runs.json (default: config)")
    q.add_argument(
        "--update-docs",
        action="store_true",
        help="write the repository's own results: --out docs/results, then re-render docs/RESULTS.md",
    )
    q.add_argument("--models", default=None, help="comma list: popularity,sasrec,fusion,text_moe,pq_codes,...")
    q.add_argument("--seeds", default=None, help="comma list of seeds (default 0,1,2)")
    q.add_argument("--max-minutes", type=float, default=None, help="training budget per run (wall clock)")
    q.add_argument("--epochs", type=int, default=None, help="maximum epochs per run")
    q.add_argument("--threads", type=int, default=None, help="torch threads (default: config seqrec.threads)")
    q.add_argument("--device", default=None, help="torch device (cpu, cuda, auto)")
    q.add_argument("--cold-frac", type=float, default=None, help="share of items hidden for the cold-item run")
    q.add_argument("--cold-minutes", type=float, default=None, help="training budget of a cold run")
    q.add_argument("--cold-runs", type=int, default=None, help="cold runs per model (other hidden items and seed)")
    q.add_argument("--cold-only", action="store_true", help="only the cold-item runs; update existing rows")
    q.add_argument(
        "--extend",
        action="store_true",
        help="keep stored runs of the listed seeds (same config) and train only the missing seeds",
    )
    q.add_argument(
        "--mc-only",
        action="store_true",
        help="recompute the +mc rows from the main runs' saved weights (models_dir); no training",
    )
    q.add_argument(
        "--merge-runs",
        default=None,
        metavar="DETAILS_JSON",
        help="add the runs (other seeds, same config) and cold runs (other hidden-item seeds) another bench process "
        "wrote to DETAILS_JSON; no training",
    )
    q.add_argument("--encoder-dir", default=None, help="fine-tuned encoder folder (default: base encoder)")
    q.add_argument("--no-progress", action="store_true", help="no progress bars")
    q.set_defaults(func=run)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The BenchSeqRecConfig fields the command line sets."""
    o: dict[str, Any] = {}
    if args.models:
        o["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.seeds:
        o["seeds"] = [int(x) for x in args.seeds.split(",") if x.strip()]
    for key in ("cold_frac", "cold_minutes", "cold_runs", "out"):
        if getattr(args, key) is not None:
            o[key] = getattr(args, key)
    if args.encoder_dir:
        o["encoder_dir"] = args.encoder_dir
    if args.update_docs:
        if args.out is not None and Path(args.out) != RESULTS_DIR:
            raise ValueError(f"--update-docs writes {RESULTS_DIR}: drop --out {args.out}")
        o["out"] = str(RESULTS_DIR)
    seq = {k: getattr(args, k) for k in ("max_minutes", "epochs", "threads") if getattr(args, k) is not None}
    if args.device:
        seq["device"] = args.device
    if seq:
        o["seqrec"] = seq
    return o


def run(args: argparse.Namespace) -> int:
    from training.config import BenchSeqRecConfig, ConfigError, load_config
    from training.data.loader import DatasetError, load_dataset
    from training.reports import render_page
    from training.seqrec.bench import bench, merge_runs

    log = logging.getLogger("recsvc-train")
    try:
        cfg = load_config(BenchSeqRecConfig, Path(args.config) if args.config else None, overrides(args), args.set)
        if args.merge_runs:
            name = load_dataset(Path(args.data), require_sequences=False, allow_empty_titles=True).name
            rows = merge_runs(cfg, name, Path(args.merge_runs))
        else:
            if cfg.seqrec.threads > 0:
                os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(cfg.seqrec.threads)
            rows = bench(
                Path(args.data),
                cfg,
                cold_only=args.cold_only,
                extend=args.extend,
                mc_only=args.mc_only,
                progress=not args.no_progress,
            )
    except ConfigError:
        raise  # recsvc-train reports it (exit 2)
    except (DatasetError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    if args.update_docs:
        # the summary opens the page with the best row of each family: it is re-rendered with the table
        log.info("rendered %s", render_page(RESULTS_DIR, DEFAULT_PATH, ["summary", "seqrec"]))
    print(json.dumps(rows, indent=2))
    return 0
