"""`python -m training.jobs.semantic_ids`: semantic IDs for a catalog's text vectors
(:mod:`training.semantic_ids.build`), written to ``<out>/semantic_ids/{sids.npy,codec.npz}``.

    python -m training.jobs.semantic_ids --vectors items/text_vectors.npy --out DIR
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from training.cli.common import add_set_arg
from training.config import ConfigError, SemanticIdConfig, load_config
from training.semantic_ids.build import build_semantic_ids


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vectors", required=True, help="text vectors .npy [N, T]")
    p.add_argument("--out", required=True, help="folder that receives semantic_ids/")
    p.add_argument("--config", default=None, help="YAML overrides of SemanticIdConfig")
    add_set_arg(p, "SemanticIdConfig")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {k: v for k, v in {"epochs": args.epochs, "threads": args.threads}.items() if v is not None}
    try:
        cfg = load_config(SemanticIdConfig, Path(args.config) if args.config else None, overrides, args.set)
    except ConfigError as exc:
        p.error(str(exc))  # exit 2
    res = build_semantic_ids(np.load(args.vectors), cfg, Path(args.out))
    print(
        json.dumps(
            {
                **res.spec.to_dict(),
                "train_seconds": round(res.train_seconds, 1),
                "recon_loss": res.final_recon_loss,
                "torch_codec_agreement": res.torch_codec_agreement,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
