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

import json
import random
import time
from pathlib import Path
from typing import Any

from benchmarks.serve import latency_main, latency_rows, resolve_set, served

KINDS = ("no profile", "user_id", "profile (repeated)", "profile (new)")


def run(artifacts: Path, n: int, threads: int, variant: str, seed: int = 0) -> dict[str, Any]:
    from service.core.manifest import Manifest
    from service.features import PROFILES, has_feature

    root = resolve_set(artifacts)
    manifest = Manifest.read(root)
    if not has_feature(PROFILES, manifest):
        raise SystemExit(f"{root}: built without user profiles (recsvc-train build --use-profile)")
    profile = PROFILES.spec(manifest)
    item_ids = json.loads((root / manifest.items.ids).read_text())
    user_ids = json.loads((root / profile.user_ids).read_text())
    golden = profile.golden
    rng = random.Random(seed)
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    with served(root, variant, threads) as client:
        for i in range(n + 5):
            history = rng.sample(item_ids, 5)
            bodies = {
                "no profile": {"history": history},
                "user_id": {"history": history, "user_id": rng.choice(user_ids)},
                "profile (repeated)": {"history": history, "profile": golden[i % len(golden)].profile},
                # a new age every request: a sentence the service has not embedded yet
                "profile (new)": {"history": history, "profile": {**golden[0].profile, "age": 1000 + i}},
            }
            for kind in KINDS[i % 4 :] + KINDS[: i % 4]:  # rotate the order
                t0 = time.perf_counter()
                resp = client.post("/recommend", json=bodies[kind])
                dt = (time.perf_counter() - t0) * 1000
                if resp.status_code != 200:
                    raise SystemExit(f"{kind}: {resp.status_code} {resp.text}")
                if i >= 5:  # warm-up
                    times[kind].append(dt)
    rows = latency_rows(times, "no profile")
    return {"artifacts": manifest.version, "n": n, "threads": threads, "encoder": variant, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    return latency_main(__doc__, argv, run, "no profile")


if __name__ == "__main__":
    raise SystemExit(main())
