"""`recsvc-train`: offline jobs.

    recsvc-train build --data DIR [--out artifacts] [--config FILE.yaml] [--name NAME] [--set genrec.epochs=2 ...]
    recsvc-train demo-data --out DIR [--items N --users N --seed S]
    recsvc-train push [--artifacts DIR] [--version V]
    recsvc-train bench-seqrec --data DIR [--models a,b] [--seeds 0,1,2] [--out DIR | --update-docs] [--threads 1]
    recsvc-train bench-seqrec --data DIR --models fusion --seeds 0,1,2 --extend   # add the missing seeds
    recsvc-train report [--results docs/results] [--page docs/RESULTS.md]   # re-render the page from the JSON
    recsvc-train finetune-encoder --data DIR [--out DIR] [--config training/configs/encoder/industrial.yaml]
    recsvc-train eval-encoder --data DIR [--model-dir DIR] [--split FILE] [--max-length N]
    recsvc-train encoder-results --data DIR --run DIR
    recsvc-train encoder-downstream --data DIR --encoder NAME=DIR [--seq-models id+text,text,text_moe]
    recsvc-train encoder-collisions --data DIR --encoder NAME=DIR [--seeds 0,1,2]

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
from service.core.sid import HISTORY_INPUTS
from training.config import (
    ITEM_ID_INITS,
    LR_SCHEDULES,
    BuildConfig,
    DemoConfig,
    EncoderFinetuneConfig,
    EvalProfilesConfig,
    dotted_overrides,
    load_config,
)
from training.jobs import bench_seqrec, report


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
    if getattr(args, "no_markov_prior", False):
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

    overrides = dotted_overrides(args.set or [], _build_overrides(args))
    cfg = load_config(BuildConfig, Path(args.config) if args.config else None, overrides)
    if cfg.seqrec.threads > 0:
        import torch

        torch.set_num_threads(cfg.seqrec.threads)
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
    if "genrec" in result.manifest.metrics:
        summary["genrec_metrics"] = result.manifest.metrics["genrec"]
    print(json.dumps(summary, indent=2))
    return 0


def cmd_eval_profiles(args: argparse.Namespace) -> int:
    from training.jobs.eval_profiles import eval_profiles, markdown_table

    lengths = [int(x) for x in args.history_lengths.split(",") if x.strip()]
    cfg = EvalProfilesConfig(artifacts=args.artifacts, data=args.data, history_lengths=lengths, threads=args.threads)
    try:
        result = eval_profiles(cfg)
    except (OSError, ValueError) as exc:
        logging.getLogger("recsvc-train").error("%s", exc)
        return 2
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(markdown_table(result))
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from training.data.demo import generate_demo

    cfg = DemoConfig(n_items=args.items, n_users=args.users, seed=args.seed)
    out = generate_demo(Path(args.out), cfg)
    print(out)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from training.pipeline.push import push

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


# ------------------------------------------------------------ results folders


def _add_results_args(p: argparse.ArgumentParser) -> None:
    """``--out`` (the JSON results folder) and ``--update-docs`` (the repository's own results) of a results command."""
    p.add_argument(
        "--out", "--results-dir", dest="results_dir", default=None, help="results folder (default var/results)"
    )
    p.add_argument(
        "--update-docs",
        action="store_true",
        help="write the repository's own results (docs/results), then re-render the section of docs/RESULTS.md",
    )


def _results_dir(args: argparse.Namespace) -> Path:
    from training.reports.page import RESULTS_DIR

    if args.update_docs:
        if args.results_dir is not None and Path(args.results_dir) != RESULTS_DIR:
            raise SystemExit(f"--update-docs writes {RESULTS_DIR}: drop --out {args.results_dir}")
        return RESULTS_DIR
    return Path(args.results_dir or "var/results")


def _results_page(args: argparse.Namespace) -> Path | None:
    """The results page to re-render (only the repository's own, with ``--update-docs``)."""
    from training.reports.page import DEFAULT_PATH

    return DEFAULT_PATH if args.update_docs else None


# ------------------------------------------------------------ encoder fine-tuning


def _encoder_config(args: argparse.Namespace) -> EncoderFinetuneConfig:
    o: dict[str, Any] = {}
    keys = ("threads", "epochs", "batch_size", "chunk_size", "lr", "max_minutes", "device", "exclude_titles_from")
    for key in (*keys, "objective", "max_pairs_per_epoch"):
        value = getattr(args, key, None)
        if value is not None:
            o[key] = value
    return load_config(EncoderFinetuneConfig, Path(args.config) if args.config else None, o)


def cmd_finetune_encoder(args: argparse.Namespace) -> int:
    from training.data.loader import DatasetError
    from training.encoder.finetune import finetune_encoder

    cfg = _encoder_config(args)
    try:
        result = finetune_encoder(Path(args.data), Path(args.out), cfg)
    except (DatasetError, ValueError) as exc:
        logging.getLogger("recsvc-train").error("%s", exc)
        return 2
    print(json.dumps(result, indent=2))
    return 0


def cmd_eval_encoder(args: argparse.Namespace) -> int:
    import torch

    from training.data.loader import load_dataset
    from training.encoder.heldout import ItemSplit, evaluate_heldout, split_items

    cfg = _encoder_config(args)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
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
    import torch

    cfg = _encoder_config(args)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        rows = _write_encoder_results(args, cfg)
    except ValueError as exc:
        logging.getLogger("recsvc-train").error("%s", exc)
        return 2
    print(json.dumps(rows, indent=2))
    return 0


def _write_encoder_results(args: argparse.Namespace, cfg: EncoderFinetuneConfig) -> list[dict[str, Any]]:
    from training.jobs.eval_encoder import write_encoder_results

    return write_encoder_results(
        Path(args.data),
        Path(args.run),
        max_length=cfg.eval_doc_max_length,
        query_max_length=cfg.query_max_length,
        batch_size=cfg.eval_batch_size,
        device=cfg.device,
        model_name=args.model_name,
        results_dir=_results_dir(args),
        results_doc=_results_page(args),
    )


def cmd_encoder_downstream(args: argparse.Namespace) -> int:
    import torch

    from training.config import SeqRecConfig
    from training.encoder.downstream import encoder_downstream

    if args.threads:
        torch.set_num_threads(args.threads)
    named = _named_encoders(args.encoder)
    if named is None:
        return 2
    encoders = {k: v for k, v in named.items() if k != "base" or not args.no_base}
    if not encoders:
        logging.getLogger("recsvc-train").error("--no-base needs at least one --encoder NAME=DIR")
        return 2
    seq = SeqRecConfig(max_minutes=args.seq_minutes, device=args.device or "cpu")
    if args.seq_epochs is not None:  # an epoch cap makes encoders comparable on a CPU shared with other jobs
        seq.epochs = args.seq_epochs
    rows = encoder_downstream(
        Path(args.data),
        encoders,
        seq_models=[m for m in args.seq_models.split(",") if m],
        seeds=[int(x) for x in args.seeds.split(",") if x],
        seq_cfg=seq,
        max_length=args.max_length,
        results_dir=_results_dir(args),
        results_doc=_results_page(args),
        cold_frac=args.cold_frac,
    )
    print(json.dumps(rows, indent=2))
    return 0


def _named_encoders(specs: list[str] | None) -> dict[str, Path | None] | None:
    """``base`` plus each ``NAME=DIR`` of ``--encoder``; None (error logged) on a malformed spec."""
    encoders: dict[str, Path | None] = {"base": None}
    for spec in specs or []:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            logging.getLogger("recsvc-train").error("--encoder takes NAME=DIR, got %r", spec)
            return None
        encoders[name] = Path(folder)
    return encoders


def cmd_encoder_collisions(args: argparse.Namespace) -> int:
    import torch

    from training.config import SemanticIdConfig
    from training.encoder.downstream import encoder_collisions

    if args.threads:
        torch.set_num_threads(args.threads)
    encoders = _named_encoders(args.encoder)
    if encoders is None:
        return 2
    overrides: dict[str, Any] = {"device": args.device or "cpu"}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    sid = load_config(SemanticIdConfig, Path(args.config) if args.config else None, overrides)
    rows = encoder_collisions(
        Path(args.data),
        encoders,
        sid_cfg=sid,
        seeds=[int(x) for x in args.seeds.split(",") if x],
        max_length=args.max_length,
        results_dir=_results_dir(args),
        results_doc=_results_page(args),
    )
    print(json.dumps(rows, indent=2))
    return 0


def _add_encoder_commands(sub: Any) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", required=True, help="dataset folder in the shared layout (items need descriptions)")
        p.add_argument("--config", default=None, help="YAML overrides of EncoderFinetuneConfig")
        p.add_argument("--threads", type=int, default=None, help="torch threads (default: config, 1)")
        p.add_argument("--device", default=None, help="torch device (cpu, cuda)")

    f = sub.add_parser("finetune-encoder", help="contrastive title<->document fine-tuning of the text encoder")
    common(f)
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
    common(e)
    e.add_argument("--model-dir", default=None, help="HF-format encoder folder (default: the base model)")
    e.add_argument("--split", default=None, help="split.json of a run (default: the config's seeded split)")
    e.add_argument("--max-length", type=int, default=None, help="document max tokens (default: config, 256)")
    e.set_defaults(func=cmd_eval_encoder)

    r = sub.add_parser("encoder-results", help="evaluate base vs fine-tuned; write docs/results/encoder.* and RESULTS")
    common(r)
    r.add_argument("--run", required=True, help="run folder of finetune-encoder")
    _add_results_args(r)
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
    _add_results_args(w)
    w.set_defaults(func=cmd_encoder_downstream)

    c = sub.add_parser("encoder-collisions", help="semantic-ID collision rate of base vs fine-tuned item vectors")
    c.add_argument("--data", required=True, help="dataset folder (e.g. ../shared/data/Scientific)")
    c.add_argument("--encoder", action="append", help="NAME=DIR of an encoder besides the base one (repeatable)")
    c.add_argument("--config", default=None, help="YAML overrides of SemanticIdConfig (RQ-VAE)")
    c.add_argument("--epochs", type=int, default=None, help="RQ-VAE epochs (default: config)")
    c.add_argument("--seeds", default="0,1,2", help="comma-separated RQ-VAE seeds; rows hold the means")
    c.add_argument("--max-length", type=int, default=128, help="item text max tokens")
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--device", default=None)
    _add_results_args(c)
    c.set_defaults(func=cmd_encoder_collisions)


def _float_list(text: str, flag: str) -> list[float]:
    """A comma-separated list of numbers ("" = empty list); a clear error for anything else."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"{flag}: expected comma-separated numbers, got {text!r}") from None


def cmd_bench_genrec(args: argparse.Namespace) -> int:
    import torch

    from training.config import GenRecConfig, SemanticIdConfig
    from training.jobs.train_genrec import bench_genrec
    from training.reports.generative import BEAM_JSON, RESULTS_JSON, write_generative_section
    from training.reports.page import DEFAULT_PATH

    if args.render_only:
        write_generative_section(RESULTS_JSON, BEAM_JSON, DEFAULT_PATH)
        return 0
    if not args.data:
        raise SystemExit("bench-genrec: --data is required (unless --render-only)")

    overrides: dict[str, Any] = {}
    keys = ("max_minutes", "epochs", "threads", "device", "val_users", "beam", "history_input", "user_buckets")
    for key in (*keys, "item_id_input", "item_id_init", "lr", "lr_schedule", "warmup_steps", "prior_train_weight"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.prior_weights is not None:
        overrides["prior_weights"] = _float_list(args.prior_weights, "--prior-weights")
    if args.prior_counts is not None:
        overrides["prior_counts"] = args.prior_counts
    cfg = load_config(GenRecConfig, Path(args.config) if args.config else None, overrides)
    sid_over = {
        k: v
        for k, v in {"threads": args.threads, "device": args.device, "cf_dim": args.cf_dim}.items()
        if v is not None
    }
    sid_cfg = load_config(SemanticIdConfig, Path(args.sid_config) if args.sid_config else None, sid_over)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
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
        sid_cfg,
        cfg,
        vectors_from=Path(args.vectors_from) if args.vectors_from else None,
        work_dir=work,
        hybrid=hybrid,
    )
    print(json.dumps(row, indent=2))
    return 0


def _add_genrec_commands(sub: Any) -> None:
    g = sub.add_parser(
        "bench-genrec", help="semantic IDs + generative model on a dataset; writes docs/results/generative.json"
    )
    g.add_argument("--data", default=None, help="dataset folder in the shared layout")
    g.add_argument("--render-only", action="store_true", help="only rebuild the generative section of RESULTS.md")
    g.add_argument("--config", default=None, help="YAML overrides of GenRecConfig (training/configs/genrec*.yaml)")
    g.add_argument("--sid-config", default=None, help="YAML overrides of SemanticIdConfig")
    g.add_argument("--vectors-from", default=None, help="artifact set of the same dataset to take text vectors from")
    g.add_argument("--work", default=None, help="work folder (default var/genrec/<dataset>)")
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
        "--user-buckets",
        type=int,
        default=None,
        help="TIGER's user token: user ids hashed into this many buckets (0 = none; default: config)",
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
    g.add_argument(
        "--prior-train-weight",
        type=float,
        default=None,
        help="train the model next to the item -> next item prior with this weight (product of experts;"
        " validation, test and serving decode with it; 0 = plain training; default: config)",
    )
    g.add_argument("--threads", type=int, default=None, help="torch threads (default: config)")
    g.add_argument("--device", default=None, help="torch device (cpu, cuda)")
    g.add_argument(
        "--hybrid",
        action="store_true",
        help="also train the served dense model on the same split and score dense, dense + prior and hybrid mode"
        " (the service's merge; its weights picked on validation); results in --hybrid-out",
    )
    g.add_argument("--hybrid-out", default=None, help="hybrid results JSON (default docs/results/hybrid.json)")
    g.add_argument("--hybrid-dense-minutes", type=float, default=15.0, help="the dense model's training budget")
    g.add_argument(
        "--hybrid-val-users",
        type=int,
        default=5000,
        help="validation cases (seeded sample) the hybrid weights are picked on (0 = all)",
    )
    g.set_defaults(func=cmd_bench_genrec)


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
    b.add_argument("--encoder-dir", default=None, help="HF-format encoder folder (default: the base model)")
    b.add_argument(
        "--use-profile", action="store_true", help="train and serve with users.jsonl profiles (seqrec.use_profile)"
    )
    b.add_argument("--threads", type=int, default=None, help="torch threads, embedding + training (default: config)")
    b.add_argument(
        "--no-markov-prior", action="store_true", help="skip the item -> next item prior stage (markov_prior)"
    )
    b.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override one config field after --config (repeatable; YAML values), e.g. --set genrec.epochs=2",
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
    ep.set_defaults(func=cmd_eval_profiles)

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
    _add_encoder_commands(sub)
    _add_genrec_commands(sub)
    bench_seqrec.add_parser(sub)
    report.add_parser(sub)
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
