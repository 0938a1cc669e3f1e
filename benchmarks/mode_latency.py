"""``POST /recommend`` latency of every mode at one client: dense, generative and hybrid on the same
histories, p50 / p95 / p99 and each one's ratio to dense, measured in one run.

    python -m benchmarks.mode_latency --artifacts artifacts [--n 300] [--quick] [--json]

Serves the latest artifact set under ``--artifacts`` (it needs the generative stages: ``make demo``
builds them) in process (FastAPI TestClient, embedded Qdrant in a temporary folder, response cache
off, the transition prior on as ``make demo`` serves it), and sends the three modes in turn on the same
seeded histories (a real user's history from the set's catalog is not stored, so histories are random
catalog items, 1 to ``--max-history`` of them), rotating the order so a noisy neighbour slows all
alike. One request at a time (1 client). The machine's load averages before and after are printed
with the table: on a shared machine read the ratios, not the milliseconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.serve import resolve_set, served

MODES = ("dense", "generative", "hybrid")


def summarize(times: dict[str, list[float]], base: str = "dense") -> dict[str, dict[str, float]]:
    """Per mode: p50 / p95 / p99 (ms) and the p50 and p99 ratios to ``base``."""
    ref50 = float(np.percentile(times[base], 50))
    ref99 = float(np.percentile(times[base], 99))
    rows: dict[str, dict[str, float]] = {}
    for mode, v in times.items():
        p50, p95, p99 = (float(np.percentile(v, q)) for q in (50, 95, 99))
        rows[mode] = {
            "p50_ms": round(p50, 2),
            "p95_ms": round(p95, 2),
            "p99_ms": round(p99, 2),
            "p50_ratio": round(p50 / ref50, 2),
            "p99_ratio": round(p99 / ref99, 2),
        }
    return rows


def run(
    artifacts: Path,
    n: int,
    threads: int,
    variant: str,
    k: int = 10,
    max_history: int = 20,
    seed: int = 0,
    torch_threads: int = 1,
) -> dict[str, Any]:
    from service.core.manifest import Manifest
    from service.features import GENERATIVE, has_feature

    root = resolve_set(artifacts)
    manifest = Manifest.read(root)
    if not has_feature(GENERATIVE, manifest):
        raise SystemExit(f"{root}: no generative model (build with the generative stages: make demo-build)")
    item_ids = json.loads((root / manifest.items.ids).read_text())
    rng = random.Random(seed)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    rankings: dict[str, str] = {}
    load_before = os.getloadavg()
    with served(root, variant, threads, torch_threads=torch_threads) as client:
        for i in range(n + 5):
            history = rng.sample(item_ids, rng.randint(1, max_history))
            for mode in MODES[i % 3 :] + MODES[: i % 3]:  # rotate the order
                t0 = time.perf_counter()
                resp = client.post("/recommend", json={"history": history, "mode": mode, "k": k})
                dt = (time.perf_counter() - t0) * 1000
                if resp.status_code != 200:
                    raise SystemExit(f"{mode}: {resp.status_code} {resp.text}")
                rankings[mode] = resp.json().get("ranking", "")
                if i >= 5:  # warm-up
                    times[mode].append(dt)
    load_after = os.getloadavg()
    return {
        "artifacts": manifest.version,
        "n": n,
        "k": k,
        "max_history": max_history,
        "threads": threads,
        "torch_threads": torch_threads,
        "encoder": variant,
        "clients": 1,
        "rankings": rankings,
        "rows": summarize(times),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--artifacts", default="artifacts", help="artifacts folder (latest set) or one set")
    ap.add_argument("--n", type=int, default=300, help="requests of each mode (after 5 warm-up rounds)")
    ap.add_argument("--quick", action="store_true", help="100 requests of each mode")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--max-history", type=int, default=20, help="history lengths drawn from 1..this")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")
    ap.add_argument(
        "--torch-threads", type=int, default=1, help="torch threads of the generative decode (RECSVC_TORCH_THREADS)"
    )
    ap.add_argument("--encoder", default="int8", choices=["int8", "fp32"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING)
    n = 100 if args.quick else args.n
    result = run(
        Path(args.artifacts), n, args.threads, args.encoder, args.k, args.max_history, torch_threads=args.torch_threads
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{result['artifacts']}: {n} requests per mode, 1 client, k {args.k}, histories of 1-{args.max_history}"
        f" items, {args.encoder} encoder, {args.threads} ONNX / {args.torch_threads} torch thread(s);"
        " load average before"
        f" {'/'.join(f'{x:.2f}' for x in result['loadavg_before'])}, after"
        f" {'/'.join(f'{x:.2f}' for x in result['loadavg_after'])}"
    )
    print("| mode | ranking | p50 ms | p95 ms | p99 ms | p50 / dense | p99 / dense |")
    print("|---|---|---|---|---|---|---|")
    for mode, r in result["rows"].items():
        print(
            f"| {mode} | {result['rankings'].get(mode, '')} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} |"
            f" {r['p99_ms']:.1f} | {r['p50_ratio']:.2f} | {r['p99_ratio']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
