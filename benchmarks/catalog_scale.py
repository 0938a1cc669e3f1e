"""Dense search at catalog scale: the service's exact numpy search vs qdrant-client local mode vs
qdrant-edge (an in-process Qdrant shard with HNSW), and reindex throughput of the real service path.

    python -m benchmarks.catalog_scale [--sizes 100000,1000000] [--quick] [--dim 64] [--queries 200]
                                       [--engines exact,qdrant-local,edge] [--reindex 2000] [--artifacts DIR]
                                       [--reindex-kinds short,long] [--reindex-inflight 1,4] [--json] [--out FILE]

Catalogs are synthetic and made at run time (never written to the repo): ``--dim`` dimensional
item vectors in seeded Gaussian clusters (like trained item embeddings, which cluster by category;
uniform random vectors would make every ANN index look bad), the service's payload shape, and
queries that are perturbed item vectors. Each search is what dense ``/recommend`` asks of the store:
dot product on the ``seqrec`` vector, ``limit`` = 200 (the transition prior's candidate pool), five
history items excluded by a filter. Every (engine, size) runs in its own child process, so its
memory is its own: the arrays (vectors + payloads, "data MB", which the service's snapshot holds
in every mode), what the engine adds on top after its build ("index MB"), and the peak RSS. Rows:

- ``exact``: ``service.core.index.ExactSearcher``, the search the service answers embedded-mode
  queries with (``service/stores/qdrant.py``, ``exact_local_search``); build = its constructor;
- ``qdrant-local``: ``qdrant-client`` local mode in memory (brute force, filters in a Python loop);
  build = upserts in batches of 1,024;
- ``edge``: ``qdrant-edge-py`` shard with HNSW (m 16, ef_construct 100, one search thread); build =
  upserts + ``optimize()`` (the HNSW graph), searched with ``hnsw_ef`` = each of ``--ef``;
- ``edge-mips``: the same shard on vectors given one more coordinate so that all have the same norm
  (the standard inner-product -> cosine reduction), cosine distance: the same ranking as the dot
  product, on a graph HNSW can navigate.

recall@10: the share of the exact top 10 (same filter) an engine returns in its own top 10. A child
whose build passes ``--build-timeout-s`` is stopped and reported as such; queries stop at ``--budget-s``.

``--reindex N`` (0 to skip) also starts the service on an artifact set (as ``benchmarks.load`` finds
one) and times ``POST /admin/reindex`` of N new items twice, short titles and long descriptions, to
the swapped alias: items/s of the whole job (read, encode through the service's encoder, fuse,
upsert + verify, swap), with the job's seconds per stage (``stats.stage_s``). ``--engines ""`` runs only
the reindex; ``--reindex-inflight 1,4`` repeats it on a fresh server per value of
``RECSVC_REINDEX_ENCODE_INFLIGHT`` (encoder chunks a reindex keeps queued), so they compare in one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks._http import loadavg, percentile, stop_group

logger = logging.getLogger("benchmarks.catalog_scale")

ENGINES = ("exact", "qdrant-local", "edge", "edge-mips")
LIMIT = 200  # dense /recommend with the transition prior asks the store for max(k, 200) candidates
EXCLUDE = 5  # history items excluded by the filter
CATEGORIES = ("Hair", "Skin", "Nails", "Fragrance", "Tools", "Bath", "Makeup", "Men")
F32 = npt.NDArray[np.float32]


# ------------------------------------------------------------------ data
def synthetic_vectors(n: int, dim: int, seed: int = 0) -> F32:
    """[n, dim] float32 item vectors in Gaussian clusters (about sqrt(n)/4 of them, at least 16)."""
    rng = np.random.default_rng(seed)
    k = max(16, int(np.sqrt(n) / 4))
    centers = rng.standard_normal((k, dim)).astype(np.float32)  # [K, D]
    out = np.empty((n, dim), dtype=np.float32)
    step = 65536
    for s in range(0, n, step):  # chunks: no [n, dim] float64 temporary
        e = min(n, s + step)
        assign = rng.integers(0, k, size=e - s)
        out[s:e] = centers[assign] + 0.6 * rng.standard_normal((e - s, dim)).astype(np.float32)
    return out


def synthetic_payloads(n: int) -> list[dict[str, Any]]:
    """The service's payload shape (item id, title, categories, price, row), cheap to make."""
    return [
        {
            "item_id": f"I{i:07d}",
            "title": f"item {i}",
            "categories": ["Beauty", CATEGORIES[i % len(CATEGORIES)]],
            "price": float(5 + (i * 7) % 60),
            "row": i,
        }
        for i in range(n)
    ]


def queries(vectors: F32, n: int, seed: int = 1) -> tuple[F32, npt.NDArray[np.int64]]:
    """``n`` query vectors (item vectors plus noise) and, per query, the ``EXCLUDE`` rows its history
    holds (the item it came from among them). -> [n, D], [n, EXCLUDE]"""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, vectors.shape[0], size=(n, EXCLUDE))
    q = vectors[rows[:, 0]] + 0.3 * rng.standard_normal((n, vectors.shape[1])).astype(np.float32)
    return q.astype(np.float32), rows


def exact_top(vectors: F32, q: F32, exclude: Sequence[int], k: int) -> list[int]:
    """Ground truth: the top ``k`` rows by dot product, ``exclude`` left out (ties by row)."""
    scores = vectors @ q  # [N]
    scores[list(exclude)] = -np.inf
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.lexsort((top, -scores[top]))].tolist()


def recall_at(found: Sequence[int], truth: Sequence[int], k: int = 10) -> float:
    """Share of the first ``k`` of ``truth`` among the first ``k`` of ``found``."""
    t = set(truth[:k])
    return len(t & set(found[:k])) / max(len(t), 1)


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB (Linux /proc)."""
    cur = peak = float("nan")
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cur, peak


# --------------------------------------------------------------- engines
class Engine:
    """One way to search the catalog; the constructor imports what it needs (outside the build time)."""

    name = ""
    hnsw_m = 16  # HNSW engines: edges per node and build width (Qdrant's defaults)
    ef_construct = 100

    def build(self, vectors: F32, payloads: list[dict[str, Any]], work: Path) -> None:
        raise NotImplementedError

    def search(self, q: F32, exclude: Sequence[int], limit: int, ef: int | None) -> list[int]:
        """Rows of the top ``limit`` items, best first."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class ExactEngine(Engine):
    name = "exact"

    def __init__(self) -> None:
        from service.core import index

        self.index = index

    def build(self, vectors: F32, payloads: list[dict[str, Any]], work: Path) -> None:
        self.vector = self.index.VECTOR_SEQREC
        self.ids = [p["item_id"] for p in payloads]
        self.searcher = self.index.ExactSearcher(self.ids, payloads, {self.vector: vectors})

    def search(self, q: F32, exclude: Sequence[int], limit: int, ef: int | None) -> list[int]:
        flt = self.index.SearchFilter(exclude_ids=tuple(self.ids[i] for i in exclude))
        return [int(h.payload["row"]) for h in self.searcher.search(self.vector, q, limit, flt)]


class QdrantLocalEngine(Engine):
    name = "qdrant-local"

    def __init__(self) -> None:
        from qdrant_client import QdrantClient, models

        self.models = models
        self.client = QdrantClient(location=":memory:")

    def build(self, vectors: F32, payloads: list[dict[str, Any]], work: Path) -> None:
        models = self.models
        self.client.create_collection(
            "items", vectors_config={"seqrec": models.VectorParams(size=vectors.shape[1], distance=models.Distance.DOT)}
        )
        for s in range(0, len(payloads), 1024):
            e = min(len(payloads), s + 1024)
            self.client.upsert(
                "items",
                points=models.Batch(
                    ids=list(range(s, e)), vectors={"seqrec": vectors[s:e].tolist()}, payloads=payloads[s:e]
                ),
                wait=True,
            )

    def search(self, q: F32, exclude: Sequence[int], limit: int, ef: int | None) -> list[int]:
        m = self.models
        flt = m.Filter(must_not=[m.HasIdCondition(has_id=[int(i) for i in exclude])])
        res = self.client.query_points(
            "items", query=q.tolist(), using="seqrec", limit=limit, query_filter=flt, with_payload=True
        ).points
        return [int((p.payload or {})["row"]) for p in res]

    def close(self) -> None:
        self.client.close()


class EdgeEngine(Engine):
    name = "edge"
    distance = "Dot"

    def __init__(self) -> None:
        import qdrant_edge

        self.qe = qdrant_edge

    def build(self, vectors: F32, payloads: list[dict[str, Any]], work: Path) -> None:
        qe = self.qe
        cfg = qe.EdgeConfig(
            vectors={
                "seqrec": qe.EdgeVectorParams(size=int(vectors.shape[1]), distance=getattr(qe.Distance, self.distance))
            },
            hnsw_config=qe.HnswIndexConfig(m=self.hnsw_m, ef_construct=self.ef_construct, full_scan_threshold=1000),
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=1),  # KB: index every segment
            max_search_threads=1,
        )
        self.shard = qe.EdgeShard.create(str(work / "edge"), cfg)
        for s in range(0, len(payloads), 1024):
            e = min(len(payloads), s + 1024)
            points = [qe.Point(id=i, vector={"seqrec": vectors[i].tolist()}, payload=payloads[i]) for i in range(s, e)]
            self.shard.update(qe.UpdateOperation.upsert_points(points))
        self.shard.optimize()  # builds the HNSW graph; part of the build time
        info = self.shard.info()
        if info.indexed_vectors_count < len(payloads):
            logger.warning("edge indexed %d of %d vectors", info.indexed_vectors_count, len(payloads))

    def search(self, q: F32, exclude: Sequence[int], limit: int, ef: int | None) -> list[int]:
        qe = self.qe
        req = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(q.tolist(), using="seqrec"),
            filter=qe.Filter(must_not=[qe.HasIdCondition({int(i) for i in exclude})]),
            with_payload=True,
            params=qe.SearchParams(hnsw_ef=ef) if ef else None,
        )
        return [int((p.payload or {})["row"]) for p in self.shard.query(req)]

    def close(self) -> None:
        self.shard.close()


def mips_augment(vectors: F32) -> F32:
    """Items for an inner-product search by a cosine index: each row gets one more coordinate,
    sqrt(M^2 - |x|^2) with M the largest norm, so every row has norm M; with queries padded by a 0,
    x'.q' = x.q and, all norms equal, cosine ranks exactly as the dot product. -> [N, D + 1]"""
    norms = np.linalg.norm(vectors, axis=1)  # [N]
    extra = np.sqrt(np.maximum(float(norms.max()) ** 2 - norms**2, 0.0)).astype(np.float32)
    return np.concatenate([vectors, extra[:, None]], axis=1)


class EdgeMipsEngine(EdgeEngine):
    """The edge shard on :func:`mips_augment` ed vectors with cosine distance. At 20k items HNSW over
    raw dot products (``edge``) stalled at recall@10 0.96-0.98 whatever ``hnsw_ef`` (measured up to
    2048) while this reached 1.000; at 100k (m 16, ef_construct 100) both were at 0.97-0.99: the
    graph, not the search width, limits recall there (``--hnsw-m`` / ``--ef-construct``)."""

    name = "edge-mips"
    distance = "Cosine"

    def build(self, vectors: F32, payloads: list[dict[str, Any]], work: Path) -> None:
        super().build(mips_augment(vectors), payloads, work)

    def search(self, q: F32, exclude: Sequence[int], limit: int, ef: int | None) -> list[int]:
        return super().search(np.append(q, np.float32(0.0)), exclude, limit, ef)


ENGINE_CLASSES: dict[str, type[Engine]] = {
    "exact": ExactEngine,
    "qdrant-local": QdrantLocalEngine,
    "edge": EdgeEngine,
    "edge-mips": EdgeMipsEngine,
}


def run_engine(
    engine_name: str,
    size: int,
    dim: int,
    n_queries: int,
    efs: Sequence[int],
    budget_s: float,
    seed: int = 0,
    hnsw: tuple[int, int] = (16, 100),
) -> dict[str, Any]:
    """One engine at one size, in this process: build, memory, latency and recall. ``budget_s`` bounds
    the queries (shared by the ``efs``; at least 3 per setting), not the build."""
    engine = ENGINE_CLASSES[engine_name]()  # imports first: their memory is not the index's
    engine.hnsw_m, engine.ef_construct = hnsw
    start_rss, _ = rss_mb()
    vectors = synthetic_vectors(size, dim, seed)
    payloads = synthetic_payloads(size)
    qs, excl = queries(vectors, n_queries, seed + 1)
    base_rss, _ = rss_mb()
    with tempfile.TemporaryDirectory(prefix="recsvc-catalog-") as tmp:
        t0 = time.perf_counter()
        engine.build(vectors, payloads, Path(tmp))
        build_s = time.perf_counter() - t0
        rss, _ = rss_mb()
        row: dict[str, Any] = {
            "engine": engine_name,
            "size": size,
            "dim": dim,
            "hnsw": {"m": hnsw[0], "ef_construct": hnsw[1]} if engine_name.startswith("edge") else None,
            "build_s": round(build_s, 2),
            "build_items_per_s": round(size / build_s, 1),
            "data_mb": round(base_rss - start_rss, 1),  # vectors + payloads (the service's snapshot holds them)
            "index_mb": round(rss - base_rss, 1),  # what the engine adds on top
            "rss_mb": round(rss, 1),
            "loadavg_build": loadavg(),
            "searches": [],
        }
        settings: list[int | None] = list(efs) if engine_name.startswith("edge") else [None]
        for ef in settings:
            t_end = time.monotonic() + budget_s / len(settings)
            times: list[float] = []
            recalls: list[float] = []
            engine.search(qs[0], excl[0], LIMIT, ef)  # warm-up
            for i in range(n_queries):
                if time.monotonic() > t_end and i >= 3:
                    break
                t1 = time.perf_counter()
                found = engine.search(qs[i], excl[i], LIMIT, ef)
                times.append((time.perf_counter() - t1) * 1000)
                recalls.append(recall_at(found, exact_top(vectors, qs[i], excl[i], 10)))
            row["searches"].append(
                {
                    "ef": ef,
                    "queries": len(times),
                    "p50_ms": round(percentile(times, 50), 3),
                    "p99_ms": round(percentile(times, 99), 3),
                    "recall_at_10": round(float(np.mean(recalls)), 4),
                    "loadavg": loadavg(),
                }
            )
        engine.close()
    row["peak_rss_mb"] = round(rss_mb()[1], 1)
    return row


def child_main(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    efs = [int(x) for x in args.ef.split(",") if x]
    hnsw = (args.hnsw_m, args.ef_construct)
    row = run_engine(args.child, args.size, args.dim, args.queries, efs, args.budget_s, args.seed, hnsw)
    print(json.dumps(row), flush=True)
    return 0


def run_child(engine: str, size: int, args: argparse.Namespace, timeout_s: float) -> dict[str, Any]:
    """``run_engine`` in a child process (its own memory), stopped after ``timeout_s``."""
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "benchmarks.catalog_scale", "--child", engine, "--size", str(size),
           "--dim", str(args.dim), "--queries", str(args.queries), "--ef", args.ef,
           "--budget-s", str(args.budget_s), "--seed", str(args.seed),
           "--hnsw-m", str(args.hnsw_m), "--ef-construct", str(args.ef_construct)]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop_group(proc, 5)
        return {"engine": engine, "size": size, "status": f"stopped after {timeout_s:.0f}s", "loadavg": loadavg()}
    finally:
        if proc.poll() is None:
            stop_group(proc, 5)
    if proc.returncode != 0 or not out.strip():
        return {"engine": engine, "size": size, "status": f"failed ({proc.returncode})", "error": err[-1500:]}
    row = dict(json.loads(out.strip().splitlines()[-1]))
    row["status"] = "ok"
    return row


# ---------------------------------------------------------------- reindex
def synthetic_catalog(path: Path, n: int, kind: str, seed: int = 0) -> Path:
    """``n`` new items (ids the artifact set never saw, so every one is encoded): ``short`` = a title
    of 3-8 words, ``long`` = a title and a long description with features."""
    from benchmarks.texts import product_texts

    mix = (1.0, 0.0, 0.0) if kind == "short" else (0.0, 0.0, 1.0)
    texts = product_texts(n, seed, mix=mix)
    with path.open("w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            row = {"item_id": f"bench-{kind}-{i}", "title": t} if kind == "short" else {
                "item_id": f"bench-{kind}-{i}", "title": " ".join(t.split()[:8]), "description": t}  # fmt: skip
            f.write(json.dumps(row) + "\n")
    return path


def run_reindex(
    n: int,
    artifacts: Path | None,
    threads: int,
    timeout_s: float,
    kinds: Sequence[str] = ("short", "long"),
    inflight: Sequence[int | None] = (None,),
) -> list[dict[str, Any]]:
    """Reindex throughput through the running service (``POST /admin/reindex``), short then long,
    once per ``inflight`` value (``RECSVC_REINDEX_ENCODE_INFLIGHT``; None: the service's default),
    each on a fresh server, so the settings compare in one run."""
    rows: list[dict[str, Any]] = []
    for value in inflight:
        rows += _run_reindex(n, artifacts, threads, timeout_s, kinds, value)
    return rows


def _run_reindex(
    n: int, artifacts: Path | None, threads: int, timeout_s: float, kinds: Sequence[str], inflight: int | None
) -> list[dict[str, Any]]:
    import httpx

    from benchmarks._artifacts import artifact_set
    from benchmarks.load import start_ours

    rows = []
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(artifact_set(artifacts, threads=threads))
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recsvc-reindex-")))
        catalogs = work / "catalogs"  # the service reads catalogs from its catalog directory only
        catalogs.mkdir()
        env = {"RECSVC_CATALOG_DIR": str(catalogs)}
        if inflight is not None:
            env["RECSVC_REINDEX_ENCODE_INFLIGHT"] = str(inflight)
        ours = start_ours(root, work, threads, env, 600)
        stack.callback(ours.server.stop)
        token = (ours.server.env or {})["RECSVC_ADMIN_TOKEN"]
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=ours.server.base_url, headers=headers, timeout=60, trust_env=False) as client:
            for kind in kinds:
                catalog = synthetic_catalog(catalogs / f"{kind}.jsonl", n, kind)
                t0 = time.perf_counter()
                # force: each catalog replaces the served one, which may hold more items (shrink guard)
                r = client.post("/admin/reindex", json={"catalog_path": catalog.name, "force": True})
                r.raise_for_status()
                job_id = r.json()["job_id"]
                stages: dict[str, float] = {}
                while True:
                    job = client.get(f"/admin/reindex/{job_id}").json()
                    stages.setdefault(job["stage"], time.perf_counter() - t0)
                    if job["status"] in ("succeeded", "failed") or time.perf_counter() - t0 > timeout_s:
                        break
                    time.sleep(0.2)
                wall = time.perf_counter() - t0
                ok = job["status"] == "succeeded"
                enc = stages.get("indexing", wall) - stages.get("encoding", 0.0)
                rows.append(
                    {
                        "kind": kind,
                        "items": n,
                        "inflight": inflight,
                        "status": job["status"] if ok or job["status"] == "failed" else "timed out",
                        "error": job.get("error"),
                        "seconds": round(wall, 2),
                        "items_per_s": round(n / wall, 1) if ok else None,
                        "encode_items_per_s": round(n / enc, 1) if ok and enc > 0 else None,
                        "encoded": job.get("stats", {}).get("encoded"),
                        "stage_s": job.get("stats", {}).get("stage_s"),
                        "loadavg": loadavg(),
                    }
                )
                logger.info("reindex %d %s items: %s in %.1fs", n, kind, job["status"], wall)
                if not ok:
                    break
    return rows


# ------------------------------------------------------------------- CLI
def recommend_default(rows: list[dict[str, Any]]) -> str:
    """The engine the figures favour at the largest size measured: the fastest p99 among those whose
    recall@10 is at least 0.99 (ties to exact: no index to build)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return "no engine finished"
    largest = max(r["size"] for r in ok)
    cands = []
    for r in ok:
        if r["size"] != largest:
            continue
        for s in r["searches"]:
            if s["recall_at_10"] >= 0.99:
                cands.append((s["p99_ms"], 0 if r["engine"] == "exact" else 1, r["engine"], s["ef"]))
    if not cands:
        return f"none reaches recall@10 0.99 at {largest:,} items"
    p99, _, engine, ef = min(cands)
    return f"{engine}{f' (ef {ef})' if ef else ''}: p99 {p99:.1f} ms at {largest:,} items with recall@10 >= 0.99"


def render(res: dict[str, Any]) -> str:
    lines = [
        f"Dense search, dim {res['dim']}, limit {LIMIT}, {EXCLUDE} ids excluded, HNSW {res.get('hnsw')} "
        f"(load {res['loadavg_start']})",
        "| size | engine | ef | build s | build items/s | data MB | index MB | peak RSS MB | p50 ms | p99 ms "
        "| recall@10 | queries | load |",
        "|" + "---|" * 13,
    ]
    for r in res["search"]:
        if r.get("status") != "ok":
            lines.append(f"| {r['size']:,} | {r['engine']} | {r.get('status')} |" + " |" * 10)
            continue
        for s in r["searches"]:
            lines.append(
                f"| {r['size']:,} | {r['engine']} | {s['ef'] or '–'} | {r['build_s']:.1f} "
                f"| {r['build_items_per_s']:,.0f} | {r['data_mb']:,.0f} | {r['index_mb']:,.0f} "
                f"| {r['peak_rss_mb']:,.0f} "
                f"| {s['p50_ms']:.2f} | {s['p99_ms']:.2f} "
                f"| {s['recall_at_10']:.3f} | {s['queries']} | {s['loadavg'][0]:.1f} |"
            )
    if res.get("reindex"):
        lines += [
            "",
            "Reindex through POST /admin/reindex (the service's encoder, upserts, verify, swap)",
            "| items | kind | chunks in flight | status | seconds | items/s | encode items/s | stage seconds | load |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in res["reindex"]:
            stages = ", ".join(f"{k} {v:.1f}" for k, v in (r.get("stage_s") or {}).items() if v >= 0.05)
            lines.append(
                f"| {r['items']:,} | {r['kind']} | {r.get('inflight') or 'default'} | {r['status']} "
                f"| {r['seconds']:.1f} | {r['items_per_s'] or '–'} "
                f"| {r['encode_items_per_s'] or '–'} | {stages or '–'} | {r['loadavg'][0]:.1f} |"
            )
    lines += ["", f"Recommended default by these figures: {res['recommended']}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.catalog_scale", description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", default=None, help="comma-separated catalog sizes (default 100000,1000000)")
    ap.add_argument("--quick", action="store_true", help="sizes 20000,100000, fewer queries, 300-item reindex")
    ap.add_argument("--dim", type=int, default=64, help="vector size (the seqrec hidden size)")
    ap.add_argument("--queries", type=int, default=None, help="queries per engine (default 200, quick 50)")
    ap.add_argument("--ef", default="64,128,256", help="HNSW ef of the edge searches (comma-separated)")
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"subset of {','.join(ENGINES)}")
    ap.add_argument(
        "--budget-s", type=float, default=None, help="query time per engine and size (default 300, quick 60)"
    )
    ap.add_argument(
        "--build-timeout-s", type=float, default=None, help="build limit per engine and size (default 2400, quick 300)"
    )
    ap.add_argument(
        "--reindex", type=int, default=None, help="items per reindex run, 0 = skip (default 2000, quick 300)"
    )
    ap.add_argument("--reindex-kinds", default="short,long", help="catalogs of the reindex runs (short, long)")
    ap.add_argument(
        "--reindex-inflight",
        default="",
        help="comma-separated RECSVC_REINDEX_ENCODE_INFLIGHT values to compare (default: the service's own)",
    )
    ap.add_argument("--hnsw-m", type=int, default=16, help="HNSW edges per node (edge engines)")
    ap.add_argument("--ef-construct", type=int, default=100, help="HNSW build width (edge engines)")
    ap.add_argument("--artifacts", type=Path, default=None, help="artifact set for the reindex (as benchmarks.load)")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads of the service (reindex)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child_main(args)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    sizes = [int(s) for s in (args.sizes or ("20000,100000" if args.quick else "100000,1000000")).split(",") if s]
    engines = [e for e in args.engines.split(",") if e]
    if unknown := set(engines) - set(ENGINES):
        ap.error(f"unknown engines {sorted(unknown)} (known: {', '.join(ENGINES)})")
    args.queries = args.queries or (50 if args.quick else 200)
    args.budget_s = args.budget_s or (60.0 if args.quick else 300.0)
    args.build_timeout_s = args.build_timeout_s or (300.0 if args.quick else 2400.0)
    n_reindex = args.reindex if args.reindex is not None else (300 if args.quick else 2000)
    if args.quick and args.ef == "64,128,256":
        args.ef = "64,256"
    res: dict[str, Any] = {
        "benchmark": "catalog_scale",
        "dim": args.dim,
        "sizes": sizes,
        "hnsw": {"m": args.hnsw_m, "ef_construct": args.ef_construct},
        "loadavg_start": loadavg(),
    }
    res["search"] = []
    for size in sizes:
        for engine in engines:
            logger.info("%s at %d items", engine, size)
            row = run_child(engine, size, args, timeout_s=args.budget_s + args.build_timeout_s)
            res["search"].append(row)
            if row.get("status") == "ok":
                s = row["searches"][-1]
                logger.info(
                    "  build %.1fs, p99 %.2f ms, recall@10 %.3f", row["build_s"], s["p99_ms"], s["recall_at_10"]
                )
            else:
                logger.warning("  %s", row.get("status"))
    res["recommended"] = recommend_default(res["search"])
    if n_reindex > 0:
        kinds = [k for k in args.reindex_kinds.split(",") if k]
        if unknown := set(kinds) - {"short", "long"}:
            ap.error(f"unknown reindex kinds {sorted(unknown)} (known: short, long)")
        inflight: list[int | None] = [int(x) for x in args.reindex_inflight.split(",") if x] or [None]
        res["reindex"] = run_reindex(n_reindex, args.artifacts, args.threads, args.budget_s * 2, kinds, inflight)
    res["loadavg_end"] = loadavg()
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1) if args.json else render(res))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
    raise SystemExit(130)
