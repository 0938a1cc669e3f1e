"""`recsvc-train`: offline jobs.

    recsvc-train build --data DIR [--out artifacts] [--config FILE.yaml] [--name NAME] [--set genrec.epochs=2 ...]
    recsvc-train demo-data --out DIR [--items N --users N --seed S]
    recsvc-train push [--artifacts DIR] [--version V]
    recsvc-train bench-seqrec --data DIR [--models a,b] [--seeds 0,1,2] [--out DIR | --update-docs] [--threads 1]
    recsvc-train bench-seqrec --data DIR --models fusion --seeds 0,1,2 --extend   # add the missing seeds
    recsvc-train bench-genrec --data DIR --config training/configs/genrec_beauty.yaml [--set genrec.epochs=5]
    recsvc-train report [--results docs/results] [--page docs/RESULTS.md]   # re-render the page from the JSON
    recsvc-train finetune-encoder --data DIR [--out DIR] [--config training/configs/encoder/industrial.yaml]
    recsvc-train eval-encoder --data DIR [--model-dir DIR] [--split FILE] [--max-length N]
    recsvc-train encoder-results --data DIR --run DIR
    recsvc-train encoder-downstream --data DIR --encoder NAME=DIR [--seq-models id+text,text,text_moe]
    recsvc-train encoder-collisions --data DIR --encoder NAME=DIR [--seeds 0,1,2]

Every command that reads a config dataclass of training/config.py takes `--set PATH=VALUE`
(repeatable): PATH is dotted through its nested sections (`--set seqrec.lr=0.002`), VALUE is read
as YAML and type-checked against the field. Precedence: defaults < --config YAML < the command's
own flags < --set. An unknown path or a value of the wrong type exits with status 2 and names
the valid keys.

`build` accepts any dataset folder in the shared layout (items.jsonl,
sequences.jsonl, optional users.jsonl; see docs/DATA.md).
"""

from __future__ import annotations

import argparse
import logging
import sys

from service.core.manifest import ManifestError
from training.cli.common import setup_logging
from training.config import ConfigError


def make_parser() -> argparse.ArgumentParser:
    # Command modules are imported here, not at module level: jobs may import training.cli.common.
    from training.cli import build, encoder, genrec
    from training.jobs import bench_seqrec, report

    p = argparse.ArgumentParser(prog="recsvc-train", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--log-level", default="INFO")
    sub = p.add_subparsers(dest="cmd", required=True)
    build.add_parsers(sub)
    encoder.add_parsers(sub)
    genrec.add_parsers(sub)
    bench_seqrec.add_parser(sub)
    report.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"recsvc-train {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    except ManifestError as exc:
        logging.getLogger("recsvc-train").error("%s", exc)
        return 2


__all__ = ["main", "make_parser"]
