"""Items API figures: upsert -> first recommendable (p50/p99) and upserts/s for short titles.

    python -m benchmarks.items_api --quick              # tiny test artifact set, FakeEncoder (pipeline cost)
    python -m benchmarks.items_api --artifacts PATH     # a real set (its ONNX encoder, int8 by default)
    python -m benchmarks.items_api --demo /tmp/DIR      # the demo set, built into DIR first if missing

"Recommendable" = the first ``/recommend`` with the new id in the history answers 200, polled right
after the ``PUT`` returned (in-process app, embedded Qdrant, no Redis). With a real encoder each batch
``PUT`` is followed by a batch of the same shape through the encoder alone (``encoder_only_items_per_s``),
so the share of the API's time that is the model shows up as a ratio measured under the same load;
``--phases`` then times each step of an upsert batch alone (shares of their sum). The load
average is printed next to the figures: on a shared machine they are only comparable within one run.
BLAS runs single-threaded, as in the served process (``recsvc serve`` sets ``OPENBLAS_NUM_THREADS=1``).

``--demo DIR`` builds, when DIR holds no artifact set yet, the seeded demo dataset
(``python -m training.data.demo --out DIR/data``) and its artifacts without touching Qdrant
(``recsvc-train build --data DIR/data --out DIR/artifacts --name demo --config
training/configs/demo.yaml --no-push --seqrec-minutes M --threads 1``); the encoder is the
exported MiniLM (its int8 variant by default).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# As `recsvc serve` runs (service/cli.py): one BLAS thread per process, set before numpy loads. A BLAS
# pool of one thread per core fights the encoder and the event loop for the cores: the seqrec fusion of
# a 50-item batch measured 46 ms with 2 threads against 11 ms with 1 at load ~7 on 2 cores.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

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


def run(client: Any, singles: int, batches: int, batch: int, encoder: Any = None) -> dict[str, float]:
    from service.core.items import item_from_dict, item_text

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
    api_s = enc_s = 0.0
    for b in range(batches):  # API and encoder-alone batches interleaved: both see the same load
        items = [{"item_id": f"BENCH-B{b}-{j}", "title": f"Short title {b} {j}"} for j in range(batch)]
        t0 = time.perf_counter()
        resp = client.put("/admin/items", json={"items": items}, headers=h)
        api_s += time.perf_counter() - t0
        assert resp.status_code == 200, resp.text
        if encoder is not None:
            t0 = time.perf_counter()
            encoder.encode([item_text(item_from_dict(it)) for it in items])  # the texts the PUT encoded
            enc_s += time.perf_counter() - t0
    out = {
        "upsert_to_recommendable_p50_ms": _pct(lat, 50),
        "upsert_to_recommendable_p99_ms": _pct(lat, 99),
        "upserts_per_s": batches * batch / api_s,
    }
    if encoder is not None:
        out["encoder_only_items_per_s"] = batches * batch / enc_s
        out["api_over_encoder_ratio"] = out["upserts_per_s"] / out["encoder_only_items_per_s"]
    return out


async def phase_seconds(state: Any, batches: int, batch: int) -> dict[str, float]:
    """The steps of one upsert batch (``ItemCatalog.upsert``), each timed alone on fresh items of
    short titles: text encoding, seqrec fusion, log append (+fsync), snapshot change, store write."""
    import numpy as np

    from service.artifacts import aligned_seqrec_vectors
    from service.core.items import Item, item_text
    from service.stores.item_log import upsert_record
    from service.stores.qdrant import ItemChange, apply_changes

    t = dict.fromkeys(("encode", "seqrec_fusion", "log_append_fsync", "snapshot_apply", "store_write"), 0.0)
    art = state.artifacts
    for b in range(batches):
        items = [Item(f"PHASE-{b}-{j}", f"Short title {b} {j}") for j in range(batch)]
        t0 = time.perf_counter()
        text = np.asarray(await state.embed([item_text(it) for it in items]), dtype=np.float32)  # [M, T]
        t1 = time.perf_counter()
        seq = None if art.seqrec is None else aligned_seqrec_vectors(art.seqrec, art, items, text)  # [M, D]
        t2 = time.perf_counter()
        changes = [ItemChange(it, text[i], None if seq is None else seq[i]) for i, it in enumerate(items)]
        state.items.log.append([upsert_record(c, art.version) for c in changes])
        t3 = time.perf_counter()
        new, rows, removed = apply_changes(state.store.snapshot, changes, [])
        t4 = time.perf_counter()
        state.store.write_changes(new, rows, removed)
        t5 = time.perf_counter()
        state.store.set_snapshot(new)
        for k, dt in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            t[k] += dt
    total = sum(t.values())
    return {f"share_{k}": v / total for k, v in t.items()}


def build_demo(root: Path, seqrec_minutes: float) -> Path:
    """The demo artifact set under ``root/artifacts`` (built first when missing); -> the artifacts folder."""
    artifacts = root / "artifacts"
    if (artifacts / "LATEST").is_file():
        return artifacts
    data = root / "data"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    bindir = Path(sys.executable).parent
    subprocess.run([sys.executable, "-m", "training.data.demo", "--out", str(data)], check=True, env=env)
    build = [str(bindir / "recsvc-train"), "build", "--data", str(data), "--out", str(artifacts), "--name", "demo"]
    build += ["--config", "training/configs/demo.yaml", "--no-push", "--seqrec-minutes", str(seqrec_minutes)]
    subprocess.run([*build, "--threads", "1"], check=True, env=env)
    return artifacts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny test artifact set + FakeEncoder, few requests")
    ap.add_argument("--artifacts", type=Path, default=None, help="artifacts folder holding a real set")
    ap.add_argument("--demo", type=Path, default=None, help="folder for the demo set (built there when missing)")
    ap.add_argument("--seqrec-minutes", type=float, default=1.0, help="seqrec budget when --demo builds the set")
    ap.add_argument("--variant", default="int8")
    ap.add_argument("--phases", action="store_true", help="also time each step of an upsert batch (shares)")
    ap.add_argument("--singles", type=int, default=None)
    ap.add_argument("--batches", type=int, default=None)
    ap.add_argument("--batch", type=int, default=50)
    args = ap.parse_args(argv)
    from fastapi.testclient import TestClient

    singles = args.singles or (30 if args.quick else 200)
    batches = args.batches or (5 if args.quick else 20)
    if args.demo is not None:
        if args.artifacts is not None:
            ap.error("give --demo or --artifacts, not both")
        args.artifacts = build_demo(args.demo, args.seqrec_minutes)
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
        encoder = None if args.artifacts is None else app.state.recsvc.encoder
        figures = run(client, singles, batches, args.batch, encoder)
        if args.phases:
            assert client.portal is not None  # the app's event loop, started by entering the client
            figures.update(client.portal.call(phase_seconds, app.state.recsvc, batches, args.batch))
    load = os.getloadavg()
    print(f"items API benchmark: {setup}; {singles} single upserts, {batches} x {args.batch} batch upserts")
    for k, v in figures.items():
        print(f"  {k:34s} {v:10.1f}" if abs(v) >= 10 else f"  {k:34s} {v:10.3f}")
    print(f"  load average (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
