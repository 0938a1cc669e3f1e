"""The serving engine in process: old path vs new path side by side, and the ONNX session study.

    python -m benchmarks.engine [--quick] [--json] [--artifacts DIR] [--variant int8|fp32]

Everything runs in one process on the same seeded product-like texts (``benchmarks/texts.py``),
through the real :class:`service.encoding.batcher.DynamicBatcher` on an asyncio loop, with
in-process clients (no HTTP). Each workload is measured for the two paths in alternating
rounds (old, new, old, new, ...), and the ratios are computed per round, so a noisy
neighbour on a shared machine slows both alike; ``os.getloadavg()`` is printed beside
every figure.

- old: the service as it was: the serial path (one thread: tokenize -> model -> pool),
  a 5 ms fill window before every batch (also when the encoder is idle), onnxruntime
  defaults for spinning (on), and the response built as ``vectors.tolist()`` ->
  ``EmbedResponse`` (pydantic) -> FastAPI's ``jsonable_encoder`` + ``json.dumps``.
- new: the pipelined engine (tokenizer / run / pool threads, length buckets), no fill
  window when idle, spinning off, the response written once by orjson.

Workloads (the /embed rows of issue 25): 1 client x 1 text and 32 clients x 1 text
(short texts, ~10 tokens; long texts, ~120 tokens), 4 clients x 32 texts (--quick: short
1x1, short 32x1, long 32x1; the session study on the short ones). Each client
sends its next request as soon as the previous answer is serialised.

``--study sessions`` (also part of the default run) compares onnxruntime session options
through the new engine: intra-op threads 1 vs 2, spinning on vs off (the choice of
``service/encoding/session.py``'s defaults; docs/OPERATIONS.md "Encoder engine").
The run also checks that the pipelined path gives the serial path's vectors on the real
model (fp32: float tolerance; int8: batch composition changes dynamic quantization).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from benchmarks.texts import product_texts

logger = logging.getLogger("benchmarks.engine")

WORKLOADS = {  # name: (clients, texts per request, length profile)
    "short 1x1": (1, 1, "short"),
    "short 32x1": (32, 1, "short"),
    "long 1x1": (1, 1, "long"),
    "long 32x1": (32, 1, "long"),
    "long 4x32": (4, 32, "long"),
}


def load() -> float:
    return round(os.getloadavg()[0], 2)


def texts_by_length(n: int, seed: int = 0) -> dict[str, list[str]]:
    """Seeded texts split by profile: short (<= 16 tokens-ish) and long (the longest third)."""
    pool = product_texts(max(n * 6, 600), seed)
    by_len = sorted(pool, key=len)
    return {"short": by_len[: max(n, 64)], "long": by_len[-max(n, 64) :]}


class OldEmbedResponse(BaseModel):
    """/embed's response model before issue 25 (vectors: list[list[float]] only)."""

    model: str
    dim: int
    vectors: list[list[float]]
    payloads: list[dict[str, Any]] | None = None


def old_response(vectors: np.ndarray, model: str) -> bytes:
    """What the route did: .tolist() -> the response model (validation) -> FastAPI's response_model
    pass over the returned object (validate + serialise, as FastAPI does) -> json.dumps."""
    resp = OldEmbedResponse(model=model, dim=int(vectors.shape[1]), vectors=vectors.tolist(), payloads=None)
    checked = OldEmbedResponse.model_validate(resp, from_attributes=True)  # FastAPI's second validation
    body = checked.model_dump(mode="json")
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def new_response(vectors: np.ndarray, model: str) -> bytes:
    from service.api.responses import dumps

    return dumps({"model": model, "dim": int(vectors.shape[1]), "encoding": "float", "vectors": vectors})


async def drive(
    batcher: Any, texts: list[str], clients: int, per_request: int, duration_s: float, respond: Callable[..., bytes]
) -> dict[str, float]:
    """Closed-loop clients for ``duration_s``. -> texts/s, p50/p99 latency ms"""
    latencies: list[float] = []
    done = 0
    stop = time.perf_counter() + duration_s

    async def client(c: int) -> None:
        nonlocal done
        i = c * 7
        while time.perf_counter() < stop:
            batch = [texts[(i + j) % len(texts)] for j in range(per_request)]
            i += per_request * clients
            t0 = time.perf_counter()
            vectors = await batcher.encode(batch)
            respond(vectors, "bench")
            latencies.append(time.perf_counter() - t0)
            done += per_request

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    wall = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1000
    return {
        "texts_per_s": round(done / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
    }


def build_encoder(root: Path, variant: str, threads: int, spinning: bool) -> Any:
    from benchmarks.embed import _encoder_files
    from service.encoding.onnx_encoder import OnnxEncoder
    from service.encoding.session import SessionTuning

    spec, _ = _encoder_files(root)
    return OnnxEncoder.from_manifest(root, spec, variant, "cpu", threads, tuning=SessionTuning(spinning=spinning))


async def measure(
    encoder: Any, *, pipeline: bool, max_wait_ms: float, workload: tuple[int, int, str], texts: dict[str, list[str]],
    duration_s: float, respond: Callable[..., bytes],
) -> dict[str, float]:  # fmt: skip
    from service.encoding.batcher import DynamicBatcher

    clients, per_request, profile = workload
    async with DynamicBatcher(
        encoder, max_batch=64, max_wait_ms=max_wait_ms, pipeline=pipeline, max_queue_texts=100_000
    ) as batcher:
        await batcher.encode(texts[profile][:4])  # warm-up
        return await drive(batcher, texts[profile], clients, per_request, duration_s, respond)


def compare(
    paths: dict[str, dict[str, Any]],
    workloads: Sequence[str],
    texts: dict[str, list[str]],
    rounds: int,
    duration_s: float,
) -> list[dict[str, Any]]:
    """Alternate the paths round by round per workload; ratios = new / old texts/s per round."""
    rows = []
    names = list(paths)
    for wl in workloads:
        per_path: dict[str, list[dict[str, float]]] = {n: [] for n in names}
        loads: list[float] = []
        for r in range(rounds):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                p = paths[name]
                res = asyncio.run(
                    measure(
                        p["encoder"],
                        pipeline=p["pipeline"],
                        max_wait_ms=p["max_wait_ms"],
                        workload=WORKLOADS[wl],
                        texts=texts,
                        duration_s=duration_s,
                        respond=p["respond"],
                    )
                )
                res["load"] = load()
                per_path[name].append(res)
                loads.append(res["load"])
        base, other = names[0], names[-1]
        ratios = [
            n["texts_per_s"] / max(o["texts_per_s"], 1e-9) for o, n in zip(per_path[base], per_path[other], strict=True)
        ]
        row = {
            "workload": wl,
            **{f"{n}_texts_per_s": statistics.median(x["texts_per_s"] for x in per_path[n]) for n in names},
            **{f"{n}_p50_ms": statistics.median(x["p50_ms"] for x in per_path[n]) for n in names},
            **{f"{n}_p99_ms": statistics.median(x["p99_ms"] for x in per_path[n]) for n in names},
            "ratio": round(statistics.median(ratios), 3),
            "ratios": [round(x, 3) for x in ratios],
            "load": [min(loads), max(loads)],
        }
        rows.append(row)
        logger.info("%s: %s", wl, row)
    return rows


def serialisation(n_rows: int = 32, dim: int = 384, repeats: int = 200) -> dict[str, float]:
    """Microseconds to write one /embed response of n_rows vectors, old vs orjson vs base64 (alternating)."""
    from service.api.embed import vectors_base64
    from service.api.responses import dumps

    v = np.random.default_rng(0).standard_normal((n_rows, dim)).astype(np.float32)
    fns: dict[str, Callable[[], bytes]] = {
        "old": lambda: old_response(v, "m"),
        "orjson": lambda: new_response(v, "m"),
        "base64": lambda: dumps({"model": "m", "dim": dim, "encoding": "base64", "vectors": vectors_base64(v)}),
    }
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    out = {f"{k}_us": round(t * 1e6, 1) for k, t in best.items()}
    out["orjson_speedup"] = round(best["old"] / best["orjson"], 1)
    out["base64_speedup"] = round(best["old"] / best["base64"], 1)
    out["load"] = load()
    return out


def agreement(root: Path, texts: dict[str, list[str]], threads: int) -> dict[str, float]:
    """Pipelined engine vs the serial encode on the real model, mixed lengths, concurrent callers."""
    from service.encoding.batcher import DynamicBatcher

    mixed = texts["short"][:40] + texts["long"][:40]
    requests = [mixed[i : i + 5] for i in range(0, len(mixed), 5)]
    out: dict[str, float] = {}
    for variant in ("fp32", "int8"):
        enc = build_encoder(root, variant, threads, spinning=False)

        async def go(enc: Any = enc) -> list[np.ndarray]:
            async with DynamicBatcher(enc, max_batch=64, pipeline=True) as b:
                return list(await asyncio.gather(*(b.encode(r) for r in requests)))

        piped = np.concatenate(asyncio.run(go()))
        serial = enc.encode(mixed)
        out[f"{variant}_max_abs_diff"] = float(np.abs(piped - serial).max())
        out[f"{variant}_min_cosine"] = round(float((piped * serial).sum(axis=1).min()), 6)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="serving engine: old vs new path, session options")
    parser.add_argument("--quick", action="store_true", help="short rounds (under ~2 minutes)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--artifacts", type=Path, default=None, help="artifact set or folder with encoder/")
    parser.add_argument("--variant", choices=("int8", "fp32"), default="int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--study", choices=("all", "paths", "sessions"), default="all")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("service").setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    rounds = args.rounds or (2 if args.quick else 4)
    duration = 1.0 if args.quick else 4.0
    texts = texts_by_length(64)
    result: dict[str, Any] = {"load_start": load(), "threads": args.threads, "variant": args.variant, "rounds": rounds}
    with contextlib.ExitStack() as stack:
        root = args.artifacts
        if root is None:
            from training.config import EncoderExportConfig
            from training.encoder.export import export_encoder

            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recsvc-engine-")))
            export_encoder(root, EncoderExportConfig())
        result["serialisation_32x384"] = serialisation()
        logger.info("serialisation: %s", result["serialisation_32x384"])
        if args.study in ("all", "paths"):
            result["agreement"] = agreement(root, texts, args.threads)
            logger.info("agreement: %s", result["agreement"])
            paths = {
                "old": {
                    "encoder": build_encoder(root, args.variant, args.threads, spinning=True),
                    "pipeline": False,
                    "max_wait_ms": 5.0,
                    "respond": old_response,
                },
                "new": {
                    "encoder": build_encoder(root, args.variant, args.threads, spinning=False),
                    "pipeline": True,
                    "max_wait_ms": 0.0,
                    "respond": new_response,
                },
            }
            wls = ["short 1x1", "short 32x1", "long 32x1"] if args.quick else list(WORKLOADS)
            result["paths"] = compare(paths, wls, texts, rounds, duration)
        if args.study in ("all", "sessions"):
            configs = {
                f"t{t}-{'spin' if s else 'nospin'}": {
                    "encoder": build_encoder(root, args.variant, t, spinning=s),
                    "pipeline": True,
                    "max_wait_ms": 0.0,
                    "respond": new_response,
                }
                for t in (1, args.threads)
                for s in (True, False)
            }
            base = f"t{args.threads}-spin"
            rows = []
            for name, cfg in configs.items():
                if name == base:
                    continue
                pair = {base: configs[base], name: cfg}
                wls = ["short 1x1", "short 32x1"] if args.quick else ["short 1x1", "short 32x1", "long 4x32"]
                for row in compare(pair, wls, texts, rounds, duration * 0.7):
                    rows.append({"config": name, "vs": base, **row})
            result["sessions"] = rows
    result["load_end"] = load()
    if args.json:
        print(json.dumps(result))
        return
    print(f"engine benchmark ({args.variant}, {args.threads} threads, {rounds} rounds), load {result['load_start']}")
    s = result["serialisation_32x384"]
    print(
        f"response of 32x384: old {s['old_us']} us, orjson {s['orjson_us']} us ({s['orjson_speedup']}x), "
        f"base64 {s['base64_us']} us ({s['base64_speedup']}x)  load {s['load']}"
    )
    if "agreement" in result:
        print("pipelined vs serial on the real model:", result["agreement"])
    if "paths" in result:
        print(f"{'workload':<12} {'old/s':>8} {'new/s':>8} {'new/old':>8} {'old p50':>8} {'new p50':>8}  load")
        for r in result["paths"]:
            print(
                f"{r['workload']:<12} {r['old_texts_per_s']:>8.1f} {r['new_texts_per_s']:>8.1f} {r['ratio']:>7.2f}x "
                f"{r['old_p50_ms']:>8.1f} {r['new_p50_ms']:>8.1f}  {r['load'][0]}-{r['load'][1]}"
            )
    if "sessions" in result:
        print(f"{'config':<12} {'vs':<10} {'workload':<12} {'ratio':>7}  load")
        for r in result["sessions"]:
            print(
                f"{r['config']:<12} {r['vs']:<10} {r['workload']:<12} {r['ratio']:>6.2f}x  "
                f"{r['load'][0]}-{r['load'][1]}"
            )
    print(f"load at end {result['load_end']}")


if __name__ == "__main__":
    main()
