"""``python -m training.data.demo --out DIR [--items N] [--users N] [--seed S]``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from training.config import DemoConfig
from training.data.demo.generate import generate_demo


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.data.demo", description="Write the seeded synthetic demo dataset (shared layout)."
    )
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--items", type=int, default=DemoConfig.n_items, help="catalog size")
    ap.add_argument("--users", type=int, default=DemoConfig.n_users, help="number of users (one sequence each)")
    ap.add_argument("--seed", type=int, default=DemoConfig.seed)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        generate_demo(Path(args.out), DemoConfig(n_items=args.items, n_users=args.users, seed=args.seed))
    except ValueError as exc:
        ap.error(str(exc))
    return 0
