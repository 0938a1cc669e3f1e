"""Generative commands: ``bench-genrec``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.core.sid import HISTORY_INPUTS
from training.cli.common import add_set_arg, float_list, set_threads
from training.config import ITEM_ID_INITS, LR_SCHEDULES, GenRecConfig, SemanticIdConfig, apply_sets, load_config

_FLAG_KEYS = ("max_minutes", "epochs", "threads", "device", "val_users", "beam", "history_input")
_MORE_FLAG_KEYS = ("item_id_input", "item_id_init", "lr", "lr_schedule", "warmup_steps")
_DISTILL_FLAG_KEYS = ("distill_weight", "distill_top", "distill_temperature")


@dataclass
class BenchGenRecSettings:
    """What ``bench-genrec --set`` paths start from: ``genrec.*`` and ``semantic_ids.*`` (as in BuildConfig)."""

    genrec: GenRecConfig
    semantic_ids: SemanticIdConfig


def genrec_configs(args: argparse.Namespace) -> BenchGenRecSettings:
    """Both configs: defaults < --config / --sid-config < the dedicated flags < --set."""
    flags = {k: v for k in (*_FLAG_KEYS, *_MORE_FLAG_KEYS, *_DISTILL_FLAG_KEYS) if (v := getattr(args, k)) is not None}
    if args.prior_weights is not None:
        flags["prior_weights"] = float_list(args.prior_weights, "--prior-weights")
    if args.prior_counts is not None:
        flags["prior_counts"] = args.prior_counts
    cfg = load_config(GenRecConfig, Path(args.config) if args.config else None, flags)
    sid_flags = {k: v for k in ("threads", "device", "cf_dim") if (v := getattr(args, k)) is not None}
    sid_cfg = load_config(SemanticIdConfig, Path(args.sid_config) if args.sid_config else None, sid_flags)
    return apply_sets(BenchGenRecSettings(cfg, sid_cfg), args.set or [])


def cmd_bench_genrec(args: argparse.Namespace) -> int:
    from training.jobs.train_genrec import bench_genrec
    from training.reports.generative import BEAM_JSON, RESULTS_JSON, write_generative_section
    from training.reports.page import DEFAULT_PATH

    if args.render_only:
        write_generative_section(RESULTS_JSON, BEAM_JSON, DEFAULT_PATH)
        return 0
    if not args.data:
        raise SystemExit("bench-genrec: --data is required (unless --render-only)")
    settings = genrec_configs(args)
    set_threads(settings.genrec.threads)
    data = Path(args.data)
    work = Path(args.work) if args.work else Path("var/genrec") / data.name
    hybrid = None
    if args.hybrid:
        from training.evaluation.hybrid import HYBRID_JSON, HybridOptions

        hybrid = HybridOptions(
            out=Path(args.hybrid_out) if args.hybrid_out else HYBRID_JSON,
            dense_minutes=args.hybrid_dense_minutes,
            val_users=args.hybrid_val_users,
            command="recsvc-train bench-genrec " + " ".join(sys.argv[2:] if len(sys.argv) > 2 else []),
        )
    row = bench_genrec(
        data,
        settings.semantic_ids,
        settings.genrec,
        vectors_from=Path(args.vectors_from) if args.vectors_from else None,
        work_dir=work,
        hybrid=hybrid,
        dense_minutes=args.hybrid_dense_minutes,
    )
    print(json.dumps(row, indent=2))
    return 0


def _add_model_args(g: argparse.ArgumentParser) -> None:
    g.add_argument("--max-minutes", type=float, default=None, help="genrec training budget")
    g.add_argument("--epochs", type=int, default=None)
    g.add_argument("--val-users", type=int, default=None, help="validation cases for early stopping (0 = all)")
    g.add_argument("--beam", type=int, default=None)
    g.add_argument(
        "--history-input",
        choices=HISTORY_INPUTS,
        default=None,
        help="encoder positions: one per sid token (TIGER) or one per history item (default: config)",
    )
    g.add_argument(
        "--item-id-input",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add a learned per-item ID vector to each history position (needs --history-input items)",
    )
    g.add_argument(
        "--cf-dim",
        type=int,
        default=None,
        help="semantic IDs from text + a co-occurrence vector of this rank (0 = text only; default: sid config)",
    )
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (default: config)")
    g.add_argument(
        "--item-id-init",
        choices=ITEM_ID_INITS,
        default=None,
        help="start of the item ID vectors: random, or the principal components of the coded vectors (default: config)",
    )
    g.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default=None,
        help="constant, TIGER's inverse square root, or cosine to 0 over --epochs",
    )
    g.add_argument("--warmup-steps", type=int, default=None, help="linear warmup steps of inverse_sqrt / cosine")


def _add_prior_args(g: argparse.ArgumentParser) -> None:
    g.add_argument(
        "--prior-weights",
        default=None,
        help="comma-separated weights of the item -> next item prior tried on validation for prior-guided"
        " decoding after training (e.g. 0.25,0.5,1; empty string = none; default: config)",
    )
    g.add_argument(
        "--prior-counts",
        choices=("train", "histories"),
        default=None,
        help="what the prior counts: the training sequences, or everything known at evaluation time"
        " (test: plus each user's validation item; rows marked ‡) (default: config)",
    )


def _add_distill_args(g: argparse.ArgumentParser) -> None:
    g.add_argument(
        "--distill-weight",
        type=float,
        default=None,
        help="weight of the distillation term: KL to the served dense model's per-level distribution along the"
        " target's prefix (0 = off; the dense model is fitted first, or resumed from --work, budget"
        " --hybrid-dense-minutes) (default: config)",
    )
    g.add_argument("--distill-top", type=int, default=None, help="teacher items kept per example (default: config)")
    g.add_argument(
        "--distill-temperature",
        type=float,
        default=None,
        help="temperature of the teacher's softmax over its top items (default: config)",
    )


def add_parsers(sub: Any) -> None:
    g = sub.add_parser(
        "bench-genrec", help="semantic IDs + generative model on a dataset; writes docs/results/generative.json"
    )
    g.add_argument("--data", default=None, help="dataset folder in the shared layout")
    g.add_argument("--render-only", action="store_true", help="only rebuild the generative section of RESULTS.md")
    g.add_argument("--config", default=None, help="YAML overrides of GenRecConfig (training/configs/genrec*.yaml)")
    g.add_argument("--sid-config", default=None, help="YAML overrides of SemanticIdConfig")
    add_set_arg(g, "genrec (GenRecConfig) and semantic_ids (SemanticIdConfig), e.g. genrec.epochs=5")
    g.add_argument("--vectors-from", default=None, help="artifact set of the same dataset to take text vectors from")
    g.add_argument("--work", default=None, help="work folder (default var/genrec/<dataset>)")
    _add_model_args(g)
    _add_prior_args(g)
    _add_distill_args(g)
    g.add_argument("--threads", type=int, default=None, help="torch threads (default: config)")
    g.add_argument("--device", default=None, help="torch device (cpu, cuda)")
    g.add_argument(
        "--hybrid",
        action="store_true",
        help="also train the served dense model on the same split and score dense, dense + prior and hybrid mode"
        " (the service's merge; its weights picked on validation); results in --hybrid-out",
    )
    g.add_argument("--hybrid-out", default=None, help="hybrid results JSON (default docs/results/hybrid.json)")
    g.add_argument(
        "--hybrid-dense-minutes",
        type=float,
        default=15.0,
        help="the dense model's training budget (--hybrid, and the --distill-weight teacher)",
    )
    g.add_argument(
        "--hybrid-val-users",
        type=int,
        default=5000,
        help="validation cases (seeded sample) the hybrid weights are picked on (0 = all)",
    )
    g.set_defaults(func=cmd_bench_genrec)
