"""What every `recsvc-train` command group shares: logging, ``--config`` / ``--set``, results folders,
list parsing."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any, TypeVar

from training.config import load_config

log = logging.getLogger("recsvc-train")

T = TypeVar("T")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Offline by contract: nothing downloads weights at run time.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def add_set_arg(p: argparse.ArgumentParser, root: str) -> None:
    """``--set PATH=VALUE`` (repeatable): a dotted path into ``root`` (a training/config.py dataclass)."""
    p.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="PATH=VALUE",
        help=f"override one field of {root} after --config and the flags (repeatable); PATH is dotted through"
        " nested sections (e.g. seqrec.lr=0.002), VALUE a YAML scalar or flow list/mapping, type-checked",
    )


def add_config_args(p: argparse.ArgumentParser, root: str, config_help: str | None = None) -> None:
    """``--config FILE.yaml`` (fields of ``root``) and ``--set``."""
    p.add_argument("--config", default=None, help=config_help or f"YAML overrides of {root}")
    add_set_arg(p, root)


def config_from(args: argparse.Namespace, cls: type[T], flags: dict[str, Any] | None = None) -> T:
    """``cls`` from its defaults < ``--config`` < the command's dedicated ``flags`` < ``--set``."""
    path = getattr(args, "config", None)
    return load_config(cls, Path(path) if path else None, flags, getattr(args, "set", None))


def add_results_args(p: argparse.ArgumentParser) -> None:
    """``--out`` (the JSON results folder) and ``--update-docs`` (the repository's own results) of a results command."""
    p.add_argument(
        "--out", "--results-dir", dest="results_dir", default=None, help="results folder (default var/results)"
    )
    p.add_argument(
        "--update-docs",
        action="store_true",
        help="write the repository's own results (docs/results), then re-render the section of docs/RESULTS.md",
    )


def results_dir(args: argparse.Namespace) -> Path:
    from training.reports.page import RESULTS_DIR

    if args.update_docs:
        if args.results_dir is not None and Path(args.results_dir) != RESULTS_DIR:
            raise SystemExit(f"--update-docs writes {RESULTS_DIR}: drop --out {args.results_dir}")
        return RESULTS_DIR
    return Path(args.results_dir or "var/results")


def results_page(args: argparse.Namespace) -> Path | None:
    """The results page to re-render (only the repository's own, with ``--update-docs``)."""
    from training.reports.page import DEFAULT_PATH

    return DEFAULT_PATH if args.update_docs else None


def float_list(text: str, flag: str) -> list[float]:
    """A comma-separated list of numbers ("" = empty list); a clear error for anything else."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"{flag}: expected comma-separated numbers, got {text!r}") from None


def int_list(text: str, flag: str) -> list[int]:
    """A comma-separated list of integers ("" = empty list); a clear error for anything else."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"{flag}: expected comma-separated integers, got {text!r}") from None


def set_threads(n: int | None) -> None:
    """torch threads (``n`` > 0; otherwise torch's setting stays)."""
    if n and n > 0:
        import torch

        torch.set_num_threads(n)
