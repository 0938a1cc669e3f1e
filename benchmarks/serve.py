"""Shared by the latency benchmarks: serve an artifact set in process and summarise timings."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping, Sequence
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
