"""Encoder commands: ``finetune-encoder``, ``eval-encoder``, ``encoder-results``, ``encoder-downstream``,
``encoder-collisions``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from training.cli.common import (
    add_config_args,
    add_results_args,
    add_set_arg,
    config_from,
    int_list,
    log,
    results_dir,
    results_page,
    set_threads,
)
from training.config import EncoderFinetuneConfig, SemanticIdConfig, SeqRecConfig

_FLAG_KEYS = (
    *("threads", "epochs", "batch_size", "chunk_size", "lr", "max_minutes", "device"),
    *("exclude_titles_from", "objective", "max_pairs_per_epoch"),
)


def encoder_config(args: argparse.Namespace) -> EncoderFinetuneConfig:
    """EncoderFinetuneConfig: defaults < --config < the command's flags < --set."""
    flags = {
        k: v for k in (*_FLAG_KEYS, "objective", "max_pairs_per_epoch") if (v := getattr(args, k, None)) is not None
    }
    return config_from(args, EncoderFinetuneConfig, flags)


def named_encoders(specs: list[str] | None) -> dict[str, Path | None] | None:
    """``base`` plus each ``NAME=DIR`` of ``--encoder``; None (error logged) on a malformed spec."""
    encoders: dict[str, Path | None] = {"base": None}
    for spec in specs or []:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            log.error("--encoder takes NAME=DIR, got %r", spec)
            return None
        encoders[name] = Path(folder)
    return encoders


def cmd_finetune_encoder(args: argparse.Namespace) -> int:
    from training.data.loader import DatasetError
    from training.encoder.finetune import finetune_encoder

    cfg = encoder_config(args)
    try:
        result = finetune_encoder(Path(args.data), Path(args.out), cfg)
    except (DatasetError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    print(json.dumps(result, indent=2))
    return 0


def cmd_eval_encoder(args: argparse.Namespace) -> int:
    from training.data.loader import load_dataset
    from training.encoder.heldout import ItemSplit, evaluate_heldout, split_items

    cfg = encoder_config(args)
    set_threads(cfg.threads)
    ds = load_dataset(Path(args.data), require_sequences=False, allow_empty_titles=True)
    if args.split:
        split = ItemSplit.load(Path(args.split))
    else:
        split = split_items(ds.item_ids, cfg.train_fraction, cfg.val_fraction, cfg.split_seed)
    results = evaluate_heldout(
        ds.items,
        split,
        Path(args.model_dir) if args.model_dir else None,
        max_length=args.max_length or cfg.eval_doc_max_length,
        query_max_length=cfg.query_max_length,
        batch_size=cfg.eval_batch_size,
        device=cfg.device,
    )
    print(json.dumps([r.__dict__ for r in results], indent=2))
    return 0


def cmd_encoder_results(args: argparse.Namespace) -> int:
    from training.jobs.eval_encoder import write_encoder_results

    cfg = encoder_config(args)
    set_threads(cfg.threads)
    try:
        rows = write_encoder_results(
            Path(args.data),
            Path(args.run),
            max_length=cfg.eval_doc_max_length,
            query_max_length=cfg.query_max_length,
            batch_size=cfg.eval_batch_size,
            device=cfg.device,
            model_name=args.model_name,
            results_dir=results_dir(args),
            results_doc=results_page(args),
        )
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    print(json.dumps(rows, indent=2))
    return 0


def cmd_encoder_downstream(args: argparse.Namespace) -> int:
    from training.encoder.downstream import encoder_downstream

    set_threads(args.threads)
    named = named_encoders(args.encoder)
    if named is None:
        return 2
    encoders = {k: v for k, v in named.items() if k != "base" or not args.no_base}
    if not encoders:
        log.error("--no-base needs at least one --encoder NAME=DIR")
        return 2
    flags: dict[str, Any] = {"max_minutes": args.seq_minutes, "device": args.device or "cpu"}
    if args.seq_epochs is not None:  # an epoch cap makes encoders comparable on a CPU shared with other jobs
        flags["epochs"] = args.seq_epochs
    rows = encoder_downstream(
        Path(args.data),
        encoders,
        seq_models=[m for m in args.seq_models.split(",") if m],
        seeds=int_list(args.seeds, "--seeds"),
        seq_cfg=config_from(args, SeqRecConfig, flags),
        max_length=args.max_length,
        results_dir=results_dir(args),
        results_doc=results_page(args),
        cold_frac=args.cold_frac,
    )
    print(json.dumps(rows, indent=2))
    return 0


def cmd_encoder_collisions(args: argparse.Namespace) -> int:
    from training.encoder.downstream import encoder_collisions

    set_threads(args.threads)
    encoders = named_encoders(args.encoder)
    if encoders is None:
        return 2
    flags: dict[str, Any] = {"device": args.device or "cpu"}
    if args.epochs is not None:
        flags["epochs"] = args.epochs
    rows = encoder_collisions(
        Path(args.data),
        encoders,
        sid_cfg=config_from(args, SemanticIdConfig, flags),
        seeds=int_list(args.seeds, "--seeds"),
        max_length=args.max_length,
        results_dir=results_dir(args),
        results_doc=results_page(args),
    )
    print(json.dumps(rows, indent=2))
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset folder in the shared layout (items need descriptions)")
    add_config_args(p, "EncoderFinetuneConfig")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: config, 1)")
    p.add_argument("--device", default=None, help="torch device (cpu, cuda)")


def add_parsers(sub: Any) -> None:
    f = sub.add_parser("finetune-encoder", help="contrastive title<->document fine-tuning of the text encoder")
    _common(f)
    f.add_argument("--out", default=None, help="run folder (default var/encoder/<dataset>); resumed when present")
    f.add_argument("--epochs", type=int, default=None)
    f.add_argument("--batch-size", type=int, default=None, help="pairs per step (reference 512)")
    f.add_argument("--chunk-size", type=int, default=None, help="texts per forward pass (gradient caching)")
    f.add_argument("--lr", type=float, default=None)
    f.add_argument("--max-minutes", type=float, default=None, help="training wall-clock budget")
    f.add_argument("--exclude-titles-from", default=None, help="dataset folder whose item titles are not trained on")
    f.add_argument(
        "--objective",
        choices=("metadata", "behaviour", "mixed"),
        default=None,
        help="positive pairs: title<->document, consecutive training items, or both (default: config)",
    )
    f.add_argument("--max-pairs-per-epoch", type=int, default=None, help="behaviour pairs per epoch (0 = all)")
    f.set_defaults(func=cmd_finetune_encoder)

    e = sub.add_parser("eval-encoder", help="held-out title -> document retrieval of an encoder")
    _common(e)
    e.add_argument("--model-dir", default=None, help="HF-format encoder folder (default: the base model)")
    e.add_argument("--split", default=None, help="split.json of a run (default: the config's seeded split)")
    e.add_argument("--max-length", type=int, default=None, help="document max tokens (default: config, 256)")
    e.set_defaults(func=cmd_eval_encoder)

    r = sub.add_parser("encoder-results", help="evaluate base vs fine-tuned; write docs/results/encoder.* and RESULTS")
    _common(r)
    r.add_argument("--run", required=True, help="run folder of finetune-encoder")
    add_results_args(r)
    r.add_argument("--model-name", default="finetuned", help="model name of the run's rows (variants)")
    r.set_defaults(func=cmd_encoder_results)

    w = sub.add_parser("encoder-downstream", help="sequential models on a dataset with base vs fine-tuned item vectors")
    w.add_argument("--data", required=True, help="dataset with sequences (e.g. ../shared/data/Scientific)")
    w.add_argument("--encoder", action="append", help="NAME=DIR of an encoder besides the base one (repeatable)")
    w.add_argument("--seq-models", default="id+text,text", help="comma-separated: id+text, text, text_moe")
    w.add_argument("--seq-minutes", type=float, default=5.0, help="training budget per sequential model")
    w.add_argument("--seq-epochs", type=int, default=None, help="epoch cap per sequential model (default: config)")
    w.add_argument("--no-base", action="store_true", help="skip the base encoder (its rows are already there)")
    w.add_argument("--seeds", default="0", help="comma-separated seeds; rows hold the means")
    w.add_argument("--max-length", type=int, default=128, help="item text max tokens")
    w.add_argument(
        "--cold-frac", type=float, default=0.0, help="hide this share of items from training; add cold Recall@10"
    )
    w.add_argument("--threads", type=int, default=1)
    w.add_argument("--device", default=None)
    add_set_arg(w, "SeqRecConfig (the sequential models)")
    add_results_args(w)
    w.set_defaults(func=cmd_encoder_downstream)

    c = sub.add_parser("encoder-collisions", help="semantic-ID collision rate of base vs fine-tuned item vectors")
    c.add_argument("--data", required=True, help="dataset folder (e.g. ../shared/data/Scientific)")
    c.add_argument("--encoder", action="append", help="NAME=DIR of an encoder besides the base one (repeatable)")
    add_config_args(c, "SemanticIdConfig", "YAML overrides of SemanticIdConfig (RQ-VAE)")
    c.add_argument("--epochs", type=int, default=None, help="RQ-VAE epochs (default: config)")
    c.add_argument("--seeds", default="0,1,2", help="comma-separated RQ-VAE seeds; rows hold the means")
    c.add_argument("--max-length", type=int, default=128, help="item text max tokens")
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--device", default=None)
    add_results_args(c)
    c.set_defaults(func=cmd_encoder_collisions)
