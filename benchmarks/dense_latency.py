"""What the dense path's extras cost per ``POST /recommend``: the model alone, the model with the
item -> next item prior (``RECSVC_TRANSITION_PRIOR``: the store's top ``transition_pool`` plus the
last item's successors, rescored), and that with a new item in the history (given by text: one
encoder call, and its ID row borrowed from its nearest trained item).

    python -m benchmarks.dense_latency --artifacts artifacts [--n 200] [--threads 1] [--json]

Serves the latest artifact set under ``--artifacts`` (built with the transition prior, the
default of ``recsvc-train build``) twice in process, prior off and on (FastAPI TestClient, embedded
Qdrant in temporary folders, response cache off), and sends the three kinds of request in turn,
rotating their order, on the same seeded histories, so a noisy neighbour slows all alike. Prints
p50 / p95 in milliseconds and the ratios to the model alone.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from benchmarks.serve import latency_main, latency_rows, resolve_set, served

KINDS = ("model", "model + prior", "model + prior, new item")


def run(artifacts: Path, n: int, threads: int, variant: str, seed: int = 0) -> dict[str, Any]:
    from service.core.manifest import Manifest
    from service.features import TRANSITIONS, has_feature

    root = resolve_set(artifacts)
    manifest = Manifest.read(root)
    if manifest.seqrec is None or not has_feature(TRANSITIONS, manifest):
        raise SystemExit(
            f"{root}: no seqrec model with a transition prior (recsvc-train build without --no-markov-prior)"
        )
    item_ids = json.loads((root / manifest.items.ids).read_text())
    rng = random.Random(seed)
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    with served(root, variant, threads, transition_prior=False) as plain, served(root, variant, threads) as prior:
        for i in range(n + 5):
            history: list[Any] = rng.sample(item_ids, 5)
            # a new text every request, so no cache holds its vector
            new_item = {"item": {"title": f"benchmark item {i}", "description": f"new arrival number {i}"}}
            calls = {
                "model": (plain, {"history": history}),
                "model + prior": (prior, {"history": history}),
                "model + prior, new item": (prior, {"history": [*history[:2], new_item, *history[2:]]}),
            }
            for kind in KINDS[i % 3 :] + KINDS[: i % 3]:  # rotate the order
                client, body = calls[kind]
                t0 = time.perf_counter()
                resp = client.post("/recommend", json=body)
                dt = (time.perf_counter() - t0) * 1000
                if resp.status_code != 200:
                    raise SystemExit(f"{kind}: {resp.status_code} {resp.text}")
                expected = "model" if kind == "model" else "model+transition_prior"
                if resp.json().get("ranking") != expected:
                    raise SystemExit(f"{kind}: served ranking {resp.json().get('ranking')!r}, expected {expected!r}")
                if i >= 5:  # warm-up
                    times[kind].append(dt)
    rows = latency_rows(times, "model")
    return {"artifacts": manifest.version, "n": n, "threads": threads, "encoder": variant, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    return latency_main(__doc__, argv, run, "model")


if __name__ == "__main__":
    raise SystemExit(main())
