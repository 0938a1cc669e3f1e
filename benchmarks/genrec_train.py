"""Generative-model training throughput: the encoder reading one position per sid token
(TIGER, ``history_input: tokens``) vs one position per history item (``items``: the sum of
the item's token embeddings), side by side on the same batches.

    python -m benchmarks.genrec_train --json [--quick] [--config training/configs/genrec_beauty.yaml]
                                      [--data ../shared/data/Beauty] [--device cuda]

Each timed step is a real training step of ``training/models/genrec.py`` (forward,
teacher-forced loss, backward, AdamW update) on ``batch_size`` examples, batched as training
batches them (length-sorted windows, so little padding). With ``--data``
the batches are drawn from that dataset's leave-one-out training examples (so the history
lengths are the real ones); without it, from a random catalog of ``--items`` semantic IDs
with geometric history lengths (mean ``--history-mean``), capped at ``max_items``.
Rounds alternate the two inputs so both see the same machine load. Prints one JSON object:
``tokens_steps_per_s``, ``items_steps_per_s``, ``speedup`` (items / tokens) and the mean
encoder positions of each.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.beam import random_sids
from service.core.sid import HISTORY_INPUTS, SidLayout
from service.semantic_ids.decoder import history_tokens
from training.config import GenRecConfig, load_config
from training.genrec.data import LENGTH_BUCKET, training_examples
from training.loop import device_name, make_optimizer, resolve_device
from training.models.genrec import GenRecBatch, build_genrec, genrec_loss

logger = logging.getLogger("benchmarks.genrec_train")
LAYOUT = SidLayout(3, 256, 32)  # the work does not depend on the codes, only on depth and vocabulary


def examples(args: argparse.Namespace, cfg: GenRecConfig) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, str]:
    """(item tokens [N, depth], histories, targets, source) for the benchmark's batches."""
    rng = np.random.default_rng(args.seed)
    if args.data:
        from training.data.loader import load_dataset
        from training.data.split import leave_one_out

        split = leave_one_out(load_dataset(Path(args.data), allow_empty_titles=True))
        hist, targets, _ = training_examples(split.train, cfg.max_items)
        sids = random_sids(split.n_items, LAYOUT, args.seed)
        return LAYOUT.to_tokens(sids), hist, targets, f"{args.data} (leave-one-out training examples)"
    sids = random_sids(args.items, LAYOUT, args.seed)
    n = args.batch_size * LENGTH_BUCKET
    lengths = np.minimum(rng.geometric(1.0 / args.history_mean, n), cfg.max_items)  # >= 1, mean ~history_mean
    hist = [rng.integers(0, args.items, int(k)) for k in lengths]
    targets = rng.integers(0, args.items, n)
    return LAYOUT.to_tokens(sids), hist, targets, f"random catalog, history mean {args.history_mean}"


def length_bucketed_batches(lengths: np.ndarray, bs: int, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` batches of example indices formed as training forms them (``GenRecBatches.epoch``):
    a random window of ``bs * LENGTH_BUCKET`` examples sorted by history length, cut into batches;
    here ``n`` of those batches picked at random. Random batches without the sort would pad
    every batch to its longest history and time mostly padding."""
    window = rng.permutation(len(lengths))[: bs * LENGTH_BUCKET]
    window = window[np.argsort(lengths[window], kind="stable")]
    chunks = [window[i : i + bs] for i in range(0, len(window) - bs + 1, bs)]
    if len(chunks) < n:
        raise ValueError(f"{len(lengths)} examples make {len(chunks)} batches of {bs}; {n} needed (lower --reps)")
    return [chunks[j] for j in rng.choice(len(chunks), n, replace=False)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = load_config(GenRecConfig, Path(args.config)) if args.config else GenRecConfig()
    if args.batch_size:
        cfg = replace(cfg, batch_size=args.batch_size)
    args.batch_size = cfg.batch_size
    item_tokens, hist, targets, source = examples(args, cfg)
    rng = np.random.default_rng(args.seed + 1)
    picks = length_bucketed_batches(np.array([len(h) for h in hist]), cfg.batch_size, args.reps + 1, rng)

    def batches(mode: str) -> list[GenRecBatch]:
        out = []
        for idx in picks:
            ids, mask = history_tokens(item_tokens, [hist[i] for i in idx], cfg.max_items, per_item=mode == "items")
            out.append(
                GenRecBatch(
                    torch.from_numpy(ids).to(device),
                    torch.from_numpy(mask).long().to(device),
                    torch.from_numpy(item_tokens[targets[idx]]).to(device),
                )
            )
        return out

    runs: dict[str, dict[str, Any]] = {}
    for mode in HISTORY_INPUTS:
        # The two encoder inputs alone: item-ID vectors (a config extra) stay off.
        plain = replace(cfg, history_input=mode, item_id_input=False)
        model: Any = build_genrec(LAYOUT, plain, seed=args.seed)
        model = model.to(device).train()
        runs[mode] = {
            "model": model,
            "opt": make_optimizer(model, cfg.lr, cfg.weight_decay),
            "batches": batches(mode),
            "seconds": 0.0,
        }

    def step(mode: str, batch: GenRecBatch) -> None:
        r = runs[mode]
        loss = genrec_loss(r["model"], batch)
        r["opt"].zero_grad(set_to_none=True)
        loss.backward()
        r["opt"].step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    for mode in HISTORY_INPUTS:  # warm-up (allocator, kernels)
        step(mode, runs[mode]["batches"][0])
    for i in range(1, args.reps + 1):  # alternate: both inputs see the same load
        for mode in HISTORY_INPUTS:
            t0 = time.perf_counter()
            step(mode, runs[mode]["batches"][i])
            runs[mode]["seconds"] += time.perf_counter() - t0
    per_s = {mode: args.reps / runs[mode]["seconds"] for mode in HISTORY_INPUTS}
    positions = {
        mode: float(np.mean([b.attention_mask.sum(1).float().mean().item() for b in runs[mode]["batches"]]))
        for mode in HISTORY_INPUTS
    }
    logger.info("steps/s: %s", {m: round(v, 2) for m, v in per_s.items()})
    return {
        "tokens_steps_per_s": round(per_s["tokens"], 3),
        "items_steps_per_s": round(per_s["items"], 3),
        "speedup": round(per_s["items"] / per_s["tokens"], 2),
        "tokens_encoder_positions": round(positions["tokens"], 1),
        "items_encoder_positions": round(positions["items"], 1),
        "batch_size": cfg.batch_size,
        "model": f"T5 d{cfg.d_model} ff{cfg.d_ff} {cfg.encoder_layers}+{cfg.decoder_layers}L",
        "examples": source,
        "reps": args.reps,
        "device": device_name(device),
        "threads": args.threads,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print only the JSON object")
    p.add_argument("--quick", action="store_true", help="few steps (seconds on 2 cores)")
    p.add_argument("--config", default=None, help="YAML overrides of GenRecConfig (training/configs/genrec*.yaml)")
    p.add_argument("--data", default=None, help="dataset folder: take the batches from its training examples")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    p.add_argument("--items", type=int, default=12_000, help="random catalog size (without --data)")
    p.add_argument("--history-mean", type=float, default=5.0, help="mean history length (without --data)")
    p.add_argument("--reps", type=int, default=None, help="timed steps per input (default 20, --quick 4)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.reps = args.reps or (4 if args.quick else 20)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = run(args)
    if not args.json:
        print(
            f"genrec training steps/s ({result['model']}, batch {result['batch_size']}, {result['device']}):"
            f" tokens {result['tokens_steps_per_s']}, items {result['items_steps_per_s']},"
            f" items/tokens {result['speedup']}x"
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
