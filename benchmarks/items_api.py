"""Items API figures: upsert -> first recommendable (p50/p99) and upserts/s for short titles.

    python -m benchmarks.items_api --quick              # tiny test artifact set, FakeEncoder (pipeline cost)
    python -m benchmarks.items_api --artifacts PATH     # a real set (its ONNX encoder, int8 by default)

"Recommendable" = the first ``/recommend`` with the new id in the history answers 200, polled right
after the ``PUT`` returned (in-process app, embedded Qdrant, no Redis). The load average is printed
next to the figures: on a shared machine they are only comparable within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

TOKEN = "bench-admin-token-0123456789abcdef"


def _app(artifacts_dir: Path, work: Path, fake_dim: int | None, variant: str) -> Any:
    from pydantic import SecretStr

    from service.config import Settings
    from service.main import create_app
    from service.state import Components

    values: dict[str, Any] = {
        "data_dir": work / "var",
        "artifacts_dir": artifacts_dir,
        "admin_token": SecretStr(TOKEN),
        "encoder_variant": variant,
        "device": "cpu",
        "redis": {"url": None},
        "catalog_dir": work,
    }
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    components = None
    if fake_dim is not None:
        from service.encoding.fake import FakeEncoder

        components = Components(encoder=FakeEncoder(dim=fake_dim))
    return create_app(settings, components=components)


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) * 1000


def run(client: Any, singles: int, batches: int, batch: int) -> dict[str, float]:
    h = {"Authorization": f"Bearer {TOKEN}"}
    lat: list[float] = []
    for i in range(singles):
        item = {"item_id": f"BENCH-S{i}", "title": f"Bench item {i} travel mug", "categories": ["Bench"]}
        t0 = time.perf_counter()
        resp = client.put("/admin/items", json={"items": [item]}, headers=h)
        assert resp.status_code == 200, resp.text
        while client.post("/recommend", json={"history": [item["item_id"]], "k": 5}).status_code != 200:
            pass
        lat.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for b in range(batches):
        items = [{"item_id": f"BENCH-B{b}-{j}", "title": f"Short title {b} {j}"} for j in range(batch)]
        resp = client.put("/admin/items", json={"items": items}, headers=h)
        assert resp.status_code == 200, resp.text
    wall = time.perf_counter() - t0
    return {
        "upsert_to_recommendable_p50_ms": _pct(lat, 50),
        "upsert_to_recommendable_p99_ms": _pct(lat, 99),
        "upserts_per_s": batches * batch / wall,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny test artifact set + FakeEncoder, few requests")
    ap.add_argument("--artifacts", type=Path, default=None, help="artifacts folder holding a real set")
    ap.add_argument("--variant", default="int8")
    ap.add_argument("--singles", type=int, default=None)
    ap.add_argument("--batches", type=int, default=None)
    ap.add_argument("--batch", type=int, default=50)
    args = ap.parse_args(argv)
    from fastapi.testclient import TestClient

    singles = args.singles or (30 if args.quick else 200)
    batches = args.batches or (5 if args.quick else 20)
    with tempfile.TemporaryDirectory(prefix="recsvc-items-bench-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        if args.artifacts is None:
            from tests.conftest import TEXT_DIM, build_tiny_artifacts

            tiny = build_tiny_artifacts(work / "tiny")
            app = _app(tiny.artifacts_dir, work, TEXT_DIM, "fp32")
            setup = "tiny test set, FakeEncoder (no model cost: the API/log/snapshot path alone)"
        else:
            app = _app(args.artifacts.resolve(), work, None, args.variant)
            setup = f"{args.artifacts} ({args.variant} encoder)"
        client = stack.enter_context(TestClient(app))
        figures = run(client, singles, batches, args.batch)
    load = os.getloadavg()
    print(f"items API benchmark: {setup}; {singles} single upserts, {batches} x {args.batch} batch upserts")
    for k, v in figures.items():
        print(f"  {k:34s} {v:10.1f}")
    print(f"  load average (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
