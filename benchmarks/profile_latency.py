"""What a user profile costs per ``POST /recommend``: latency without a profile, with a stored
profile (``user_id``), with a request profile seen before (its embedded sentence comes from the
service's LRU, ``RECSVC_PROFILE_CACHE_SIZE``) and with a new one (verbalised + embedded by the
live encoder: one extra encoder call).

    python -m benchmarks.profile_latency --artifacts artifacts [--n 200] [--threads 1] [--json]

Serves the latest artifact set under ``--artifacts`` (it must be built with ``--use-profile``) in
process (FastAPI TestClient, embedded Qdrant in a temporary folder, response cache off) and sends
the four kinds of request in turn, round-robin, on the same seeded histories, so a noisy neighbour
slows all alike. Prints p50 / p95 in milliseconds and the ratios to the request without a profile.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("no profile", "user_id", "profile (repeated)", "profile (new)")


def run(artifacts: Path, n: int, threads: int, variant: str, seed: int = 0) -> dict[str, Any]:
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from service.config import Settings
    from service.core.manifest import Manifest, latest_version
    from service.core.profiles import PROFILE_SECTION
    from service.main import create_app

    root = latest_version(artifacts) if not (artifacts / "manifest.json").is_file() else artifacts
    manifest = Manifest.read(root)
    if PROFILE_SECTION not in manifest.extra:
        raise SystemExit(f"{root}: built without user profiles (recsvc-train build --use-profile)")
    item_ids = json.loads((root / manifest.items.ids).read_text())
    user_ids = json.loads((root / manifest.extra[PROFILE_SECTION]["user_ids"]).read_text())
    golden = manifest.extra[PROFILE_SECTION]["golden"]
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        values: dict[str, Any] = {
            "data_dir": Path(tmp),
            "artifacts_dir": root.parent,
            "artifact_version": root.name,
            "admin_token": SecretStr("benchmark-token-0123456789abcdef"),
            "encoder_variant": variant,
            "device": "cpu",
            "onnx_threads": threads,
            "qdrant": {"path": str(Path(tmp) / "qdrant")},
            "redis": {"url": None, "cache_ttl_s": 0},
        }
        settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
        times: dict[str, list[float]] = {k: [] for k in KINDS}
        with TestClient(create_app(settings)) as client:
            for i in range(n + 5):
                history = rng.sample(item_ids, 5)
                bodies = {
                    "no profile": {"history": history},
                    "user_id": {"history": history, "user_id": rng.choice(user_ids)},
                    "profile (repeated)": {"history": history, "profile": golden[i % len(golden)]["profile"]},
                    # a new age every request: a sentence the service has not embedded yet
                    "profile (new)": {"history": history, "profile": {**golden[0]["profile"], "age": 1000 + i}},
                }
                for kind in KINDS[i % 4 :] + KINDS[: i % 4]:  # rotate the order
                    t0 = time.perf_counter()
                    resp = client.post("/recommend", json=bodies[kind])
                    dt = (time.perf_counter() - t0) * 1000
                    if resp.status_code != 200:
                        raise SystemExit(f"{kind}: {resp.status_code} {resp.text}")
                    if i >= 5:  # warm-up
                        times[kind].append(dt)
    base = float(np.median(times["no profile"]))
    rows = {
        k: {
            "p50_ms": round(float(np.median(v)), 2),
            "p95_ms": round(float(np.percentile(v, 95)), 2),
            "p50_ratio": round(float(np.median(v)) / base, 2),
        }
        for k, v in times.items()
    }
    return {"artifacts": manifest.version, "n": n, "threads": threads, "encoder": variant, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--artifacts", default="artifacts", help="artifacts folder (latest set) or one set")
    ap.add_argument("--n", type=int, default=200, help="requests of each kind")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")
    ap.add_argument("--encoder", default="int8", choices=["int8", "fp32"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING)
    result = run(Path(args.artifacts), args.n, args.threads, args.encoder)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['artifacts']}: {args.n} requests per kind, {args.encoder} encoder, {args.threads} thread(s)")
        print("| request | p50 ms | p95 ms | p50 / no profile |")
        print("|---|---|---|---|")
        for kind, r in result["rows"].items():
            print(f"| {kind} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p50_ratio']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
