"""What user profiles are worth to a served model, measured through the serving path.

For an artifact set built with ``seqrec.use_profile`` and the dataset it was built from, every
leave-one-out test case is scored the way ``POST /recommend`` scores it (numpy item fusion, ONNX
user tower, numpy profile projection; no torch): once with the user's stored profile (a request
naming its ``user_id``; users without a ``users.jsonl`` row get the default) and once with the
default mean profile (a request without a profile). Histories can be cut to their last ``L`` items
to see what a profile adds for users with little history (new users).

    recsvc-train eval-profiles --artifacts artifacts/<version> --data DIR [--history-lengths 1,3,0]
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from service.core.manifest import Manifest
from service.features import PROFILES, has_feature
from service.recommender.dense import SeqRecRuntime
from service.recommender.profiles import ProfileRuntime
from training.config import EvalProfilesConfig
from training.data.loader import load_dataset
from training.data.split import leave_one_out
from training.metrics import evaluate

logger = logging.getLogger(__name__)

VARIANTS = ("own profile", "mean profile")


def eval_profiles(cfg: EvalProfilesConfig) -> dict[str, Any]:
    """-> {"rows": [{"history": L, "variant": ..., metrics...}], "n_cases": ..., ...}"""
    root = Path(cfg.artifacts)
    manifest = Manifest.read(root)
    if manifest.seqrec is None or not has_feature(PROFILES, manifest):
        raise ValueError(f"{root}: the artifact set has no seqrec model with user profiles (build with --use-profile)")
    logger.info("stage 1: load %s and %s", root, cfg.data)
    runtime = SeqRecRuntime.from_manifest(root, manifest.seqrec, device="cpu", threads=cfg.threads)
    profiles = ProfileRuntime.from_manifest(root, PROFILES.spec(manifest))
    item_ids = json.loads((root / manifest.items.ids).read_text())
    dataset = load_dataset(Path(cfg.data), allow_empty_titles=cfg.allow_empty_titles)
    if dataset.item_ids != item_ids:
        raise ValueError(f"{cfg.data} is not the dataset {root} was built from (item ids differ)")
    items = runtime.item_vectors(np.load(root / manifest.items.text_vectors))  # [N, D]
    split = leave_one_out(dataset)
    cases = split.test
    users = [dataset.sequences[c.user].user_id for c in cases]
    own = np.stack([_offset(profiles, u) for u in users])  # [C, D]
    mean = np.broadcast_to(profiles.default_offset, own.shape)  # [C, D]
    has_row = sum(u in profiles.user_row for u in users)
    logger.info("%d test cases, %d with a stored profile", len(cases), has_row)

    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    steps = [(length, variant) for length in cfg.history_lengths for variant in VARIANTS]
    for length, variant in tqdm(steps, desc="eval-profiles"):
        cut = [_Case(c.history[-length:] if length > 0 else c.history, c.target, i) for i, c in enumerate(cases)]
        offsets = own if variant == VARIANTS[0] else mean

        def score(batch: Sequence[_Case], offsets: np.ndarray = offsets) -> np.ndarray:
            hist = [items[list(c.history)] for c in batch]  # each [L_i, D]
            users_v = runtime.user_vectors(hist, offsets[[c.row for c in batch]])  # [B, D]
            return users_v @ items.T  # [B, N]

        metrics = evaluate(score, cut, batch_size=cfg.batch_size)
        rows.append({"history": length or "all", "variant": variant, **{k: round(v, 4) for k, v in metrics.items()}})
        logger.info("history %s, %s: %s", length or "all", variant, rows[-1])
    return {
        "artifacts": manifest.version,
        "dataset": dataset.name,
        "n_cases": len(cases),
        "with_profile_row": has_row,
        "seconds": round(time.perf_counter() - t0, 1),
        "rows": rows,
    }


@dataclass(frozen=True)
class _Case:
    history: tuple[int, ...]
    target: int
    row: int  # index of the case's profile offset


def _offset(profiles: ProfileRuntime, user_id: str) -> np.ndarray:
    stored = profiles.user_offset(user_id)
    return profiles.default_offset if stored is None else stored


def markdown_table(result: dict[str, Any]) -> str:
    lines = [
        "| history | profile | R@5 | R@10 | N@5 | N@10 |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        h = "whole" if r["history"] == "all" else f"last {r['history']}"
        lines.append(
            f"| {h} | {r['variant']} | {r['recall@5']:.4f} | {r['recall@10']:.4f} | {r['ndcg@5']:.4f} | "
            f"{r['ndcg@10']:.4f} |"
        )
    return "\n".join(lines)
