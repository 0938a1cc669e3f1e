"""Shared by the latency benchmarks: serve an artifact set in process and summarise timings."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def resolve_set(artifacts: Path) -> Path:
    """An artifact set folder: ``artifacts`` itself when it holds a manifest, else its latest set."""
    from service.core.manifest import latest_version

    return artifacts if (artifacts / "manifest.json").is_file() else latest_version(artifacts)


@contextlib.contextmanager
def served(root: Path, variant: str, threads: int, **settings: Any) -> Iterator[Any]:
    """A FastAPI TestClient on ``root`` with embedded Qdrant in a temporary folder and the response
    cache off (every request is computed); ``settings`` override ``service.config.Settings`` fields."""
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from service.config import Settings
    from service.main import create_app

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
            **settings,
        }
        app_settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
        with TestClient(create_app(app_settings)) as client:
            yield client


def latency_rows(times: Mapping[str, Sequence[float]], base: str) -> dict[str, dict[str, float]]:
    """p50 / p95 (ms) per kind and the p50 ratio to kind ``base``."""
    ref = float(np.median(times[base]))
    return {
        k: {
            "p50_ms": round(float(np.median(v)), 2),
            "p95_ms": round(float(np.percentile(v, 95)), 2),
            "p50_ratio": round(float(np.median(v)) / ref, 2),
        }
        for k, v in times.items()
    }


def print_table(rows: dict[str, dict[str, float]], first: str, base: str) -> None:
    print(f"| {first} | p50 ms | p95 ms | p50 / {base} |")
    print("|---|---|---|---|")
    for kind, r in rows.items():
        print(f"| {kind} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p50_ratio']:.2f} |")


def latency_main(
    doc: str | None, argv: list[str] | None, run: Callable[[Path, int, int, str], dict[str, Any]], base: str
) -> int:
    """The command line both latency benchmarks share: parse, ``run(artifacts, n, threads, encoder)``,
    print JSON or the table of ratios to kind ``base``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
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
        print_table(result["rows"], "request", base)
    return 0
