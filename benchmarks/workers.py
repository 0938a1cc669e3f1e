"""One process vs N processes of our service (embedded multi-process mode), as paired ratios.

    python -m benchmarks.workers [--quick] [--artifacts DIR] [--workers 2] [--threads 2] [--rounds 8]
                                 [--per-process-threads T] [--out FILE]

Starts our service twice on the same artifact set (``recsvc-serve``, embedded Qdrant, response
cache off): once with one process and ``--threads`` intra-op threads, once with ``--workers N``
processes (one writer + N-1 readers, ``service/workers.py``) and ``--per-process-threads`` each
(default ``threads // N``: the same thread budget), plus the in-process one-core floor of the dense
scoring (``benchmarks.load.Floor``). Then, in each of ``--rounds`` short rounds, the three take
turns (the order rotating) on the same requests: ``/recommend`` dense at 1, 20 and 100 clients and
``/embed`` short and long texts at 32 clients x 1 item.

On a shared machine the background load moves by the minute, so every figure is a ratio **within
one round** (the systems ran seconds apart): N-process / 1-process throughput and p99, and each
system's throughput against the floor and its p99 against the floor's p50, exactly the goal figures
of the /recommend rows of ``benchmarks.load``. Reported: the median of the per-round ratios with
their min and max, and the 1-minute load average of each round. The load generator runs on the
same cores as the servers (its CPU per request is recorded).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._http import loadavg, median, ratio
from benchmarks.load import (
    OURS,
    EmbedWorkload,
    Floor,
    RecommendWorkload,
    measure_embed,
    measure_recommend,
    recommend_bodies,
    rotated,
    start_ours,
    text_pools,
)

logger = logging.getLogger("benchmarks.workers")

FLOOR = "floor"


def _stats(values: list[float | None]) -> dict[str, float | None]:
    xs = [v for v in values if v is not None]
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": round(median(xs), 3), "min": round(min(xs), 3), "max": round(max(xs), 3), "n": len(xs)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks._artifacts import artifact_set
    from service.core.manifest import Manifest

    n = args.workers
    per = args.per_process_threads or max(1, args.threads // n)
    multi = f"{OURS}-{n}p"
    rec = [(1, 40 if args.quick else 100), (20, 200 if args.quick else 500), (100, 300 if args.quick else 800)]
    deadline = 6.0 if args.quick else 15.0
    embeds = [EmbedWorkload("short", 32, 1, 32, deadline), EmbedWorkload("long", 32, 1, 32, 3 * deadline)]
    result: dict[str, Any] = {
        "benchmark": "workers",
        "machine": {"cpus": os.cpu_count(), "loadavg_start": loadavg()},
        "options": {"workers": n, "threads": args.threads, "per_process_threads": per, "rounds": args.rounds},
        "rounds": [],
    }
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(artifact_set(args.artifacts, threads=args.threads))
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recsvc-workers-")))
        manifest = Manifest.read(root)
        result["artifacts"] = {"version": manifest.version, "items": manifest.items.count}
        pools = text_pools(root / manifest.encoder.tokenizer_dir)
        env = {"RECSVC_ACCESS_LOG": "false"}
        systems = {OURS: start_ours(root, work, args.threads, env, 300.0)}
        stack.callback(systems[OURS].server.stop)
        systems[multi] = start_ours(root, work, per, env, 300.0, workers=n, name=multi)
        stack.callback(systems[multi].server.stop)
        floor = Floor(root, "int8", 300.0, work / "floor.log")
        stack.callback(floor.close)
        item_ids: list[str] = json.loads((root / manifest.items.ids).read_text())
        for name, system in systems.items():  # warm-up: every shape once
            for w in embeds:
                asyncio.run(measure_embed(system, EmbedWorkload(w.texts, 2, 1, 4, 30.0), pools[w.texts][0], 0))
            asyncio.run(measure_recommend(system, RecommendWorkload(4, 40, 30.0), recommend_bodies(item_ids, 40, 7)))
            logger.info("%s warmed up", name)
        for r in range(args.rounds):
            row: dict[str, Any] = {"round": r + 1, "loadavg": loadavg(), "recommend": {}, "embed": {}}
            for wi, (clients, requests) in enumerate(rec):
                bodies = recommend_bodies(item_ids, requests, 1000 * r + clients)
                got: dict[str, Any] = {}
                for name in rotated([FLOOR, OURS, multi], r + wi):
                    if name == FLOOR:
                        got[name] = floor.run(recommend_bodies(item_ids, 60 + 2, 1000 * r + clients), 600)
                    else:
                        rw = RecommendWorkload(clients, requests, deadline)
                        got[name] = asyncio.run(measure_recommend(systems[name], rw, bodies))
                row["recommend"][clients] = got
                logger.info(
                    "round %d /recommend %3d clients: 1p %.0f req/s p99 %.1f ms | %s %.0f req/s p99 %.1f ms | "
                    "floor %.0f req/s p50 %.2f ms (load %.1f)",
                    r + 1, clients, got[OURS]["req_per_s"] or 0, got[OURS]["p99_ms"] or 0, multi,
                    got[multi]["req_per_s"] or 0, got[multi]["p99_ms"] or 0, got[FLOOR]["req_per_s"],
                    got[FLOOR]["p50_ms"], got[FLOOR]["loadavg"][0],
                )  # fmt: skip
            for wi, ew in enumerate(embeds):
                got = {}
                for name in rotated([OURS, multi], r + wi):
                    offset = (r * 131 + wi * 17) % len(pools[ew.texts][0])
                    got[name] = asyncio.run(measure_embed(systems[name], ew, pools[ew.texts][0], offset))
                row["embed"][ew.name] = got
                logger.info(
                    "round %d /embed %s: 1p %.1f items/s p99 %.0f ms | %s %.1f items/s p99 %.0f ms (load %.1f)",
                    r + 1, ew.name, got[OURS]["items_per_s"] or 0, got[OURS]["p99_ms"] or 0, multi,
                    got[multi]["items_per_s"] or 0, got[multi]["p99_ms"] or 0, got[multi]["loadavg"][0],
                )  # fmt: skip
            result["rounds"].append(row)
    result["summary"] = summarize(result["rounds"], multi)
    result["machine"]["loadavg_end"] = loadavg()
    result["duration_s"] = round(time.monotonic() - t0, 1)
    return result


def summarize(rounds: list[dict[str, Any]], multi: str) -> dict[str, Any]:
    """Per workload: medians (min, max) over rounds of the within-round ratios."""
    out: dict[str, Any] = {"recommend": {}, "embed": {}}
    for clients in rounds[0]["recommend"]:
        rows = [r["recommend"][clients] for r in rounds]
        out["recommend"][clients] = {
            "multi_over_one_throughput": _stats([ratio(g[multi]["req_per_s"], g[OURS]["req_per_s"]) for g in rows]),
            "multi_over_one_p99": _stats(
                [ratio(g[multi]["p99_ms"], g[OURS]["p99_ms"], higher_is_better=True) for g in rows]
            ),
            **{
                f"{name}_throughput_over_floor": _stats(
                    [ratio(g[name]["req_per_s"], g[FLOOR]["req_per_s"]) for g in rows]
                )
                for name in (OURS, multi)
            },
            **{
                f"{name}_p99_over_floor_p50": _stats(
                    [ratio(g[name]["p99_ms"], g[FLOOR]["p50_ms"], higher_is_better=True) for g in rows]
                )
                for name in (OURS, multi)
            },
            "floor_p50_ms": _stats([g[FLOOR]["p50_ms"] for g in rows]),
            "errors": sum(
                int(g[s].get("errors") or 0) + int(g[s].get("timeouts") or 0) for g in rows for s in (OURS, multi)
            ),
            "client_cpu_ms_per_req": _stats([g[multi].get("client_cpu_ms_per_req") for g in rows]),
        }
    for name in rounds[0]["embed"]:
        rows = [r["embed"][name] for r in rounds]
        out["embed"][name] = {
            "multi_over_one_throughput": _stats([ratio(g[multi]["items_per_s"], g[OURS]["items_per_s"]) for g in rows]),
            "multi_over_one_p99": _stats(
                [ratio(g[multi]["p99_ms"], g[OURS]["p99_ms"], higher_is_better=True) for g in rows]
            ),
        }
    la = [r["loadavg"][0] for r in rounds]
    out["loadavg_1m"] = [min(la), max(la)]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.workers", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests per workload")
    ap.add_argument("--artifacts", type=Path, default=None, help="artifact set or artifacts folder")
    ap.add_argument("--workers", type=int, default=2, help="processes of the multi-process instance (>= 2)")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads of the one-process instance")
    ap.add_argument("--per-process-threads", type=int, default=None, help="of the multi-process instance")
    ap.add_argument("--rounds", type=int, default=8, help="rounds (every ratio is taken within one)")
    ap.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    args = ap.parse_args(argv)
    if args.workers < 2 or args.rounds < 1 or args.threads < 1:
        ap.error("--workers must be >= 2, --rounds and --threads >= 1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    res = run(args)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
