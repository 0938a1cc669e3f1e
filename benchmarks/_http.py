"""What the load benchmarks share: free ports, server subprocesses that always go away, a bounded
asyncio HTTP load generator, percentiles and ratio tables.

Everything here talks to loopback addresses only, and every loop is bounded in count and in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

LOOPBACK = "127.0.0.1"


# ------------------------------------------------------------------ ports
def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (the kernel's pick: bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_loopback(url: str) -> None:
    """Refuse any target that is not a loopback address (load is only ever sent to this machine)."""
    host = httpx.URL(url).host
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
        raise ValueError(f"{url}: load benchmarks only target loopback addresses")


# ------------------------------------------------------------ statistics
def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks (numpy's default);
    NaN for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def ratio(ours: float | None, peer: float | None, *, higher_is_better: bool = True) -> float | None:
    """ours / peer for throughputs (peer / ours for latencies, so > 1 always means ours is better);
    None when either side is missing, zero or NaN."""
    if ours is None or peer is None or not math.isfinite(ours) or not math.isfinite(peer):
        return None
    if ours <= 0 or peer <= 0:
        return None
    num, den = (ours, peer) if higher_is_better else (peer, ours)
    return num / den


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded (what the machine was doing beside a figure)."""
    return [round(x, 2) for x in os.getloadavg()]


# ------------------------------------------------------------- processes
@dataclass
class ServerProcess:
    """A server started as its own process group; :meth:`stop` ends the whole group."""

    name: str
    cmd: list[str]
    base_url: str
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                self.cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(self.env) if self.env is not None else None,
                cwd=self.cwd,
                start_new_session=True,  # its own process group: workers and threads go with it
            )
        finally:
            log.close()

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def wait_ready(self, path: str, timeout_s: float, ok: Callable[[httpx.Response], bool] | None = None) -> float:
        """Poll ``GET path`` until it answers (2xx, or ``ok``); seconds it took. Raises with the log tail
        when the process exits or the time runs out."""
        t0 = time.monotonic()
        with httpx.Client(base_url=self.base_url, timeout=5.0, trust_env=False) as client:
            while True:
                if self.proc is None or self.proc.poll() is not None:
                    code = None if self.proc is None else self.proc.returncode
                    raise RuntimeError(f"{self.name} exited (code {code}) before it was ready:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    r = client.get(path)
                    if ok(r) if ok is not None else r.is_success:
                        return time.monotonic() - t0
                if time.monotonic() - t0 > timeout_s:
                    raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f}s:\n{self.log_tail()}")
                time.sleep(0.25)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM to the group, SIGKILL after ``timeout_s``; safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        stop_group(proc, timeout_s)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid


def stop_group(proc: subprocess.Popen[Any], timeout_s: float = 15.0) -> None:
    """End a process started with ``start_new_session=True`` and everything in its group."""
    for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def busy_neighbour(enabled: bool = True) -> Iterator[subprocess.Popen[bytes] | None]:
    """A CPU-bound busy loop in its own process (one core) for the duration of the block."""
    if not enabled:
        yield None
        return
    # The loop ends by itself after an hour even if this process is killed without cleanup.
    code = "import time\nt=time.monotonic()+3600\nwhile time.monotonic()<t:\n    sum(range(10000))\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    try:
        yield proc
    finally:
        stop_group(proc, 5.0)


# ----------------------------------------------------------- load client
@dataclass
class LoadResult:
    """What one batch of requests did: per request latency and outcome."""

    latencies_ms: list[float] = field(default_factory=list)  # answered 2xx
    statuses: dict[int, int] = field(default_factory=dict)  # status -> count (every answered request)
    shed_latencies_ms: list[float] = field(default_factory=list)  # answered 503 or 429
    errors: int = 0  # connection errors, non-2xx other than shed, and bad bodies
    timeouts: int = 0  # the client gave up (its own timeout)
    items: int = 0  # items (texts) in the requests answered 2xx
    wall_s: float = 0.0
    error_samples: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ok = len(self.latencies_ms)
        wall = self.wall_s if self.wall_s > 0 else math.nan
        return {
            "requests": ok + self.errors + self.timeouts + len(self.shed_latencies_ms),
            "ok": ok,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "shed": len(self.shed_latencies_ms),
            "shed_p50_ms": _round(median(self.shed_latencies_ms)),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "wall_s": round(self.wall_s, 3),
            "req_per_s": _round(ok / wall),
            "items_per_s": _round(self.items / wall),
            "p50_ms": _round(percentile(self.latencies_ms, 50)),
            "p95_ms": _round(percentile(self.latencies_ms, 95)),
            "p99_ms": _round(percentile(self.latencies_ms, 99)),
            "error_samples": self.error_samples[:3],
        }


def _round(x: float, nd: int = 2) -> float | None:
    return None if not math.isfinite(x) else round(x, nd)


SHED_STATUSES = (429, 503)
Check = Callable[[httpx.Response], str | None]  # None when the body is right, else what is wrong


async def run_clients(
    client: httpx.AsyncClient,
    path: str,
    bodies: Sequence[Any],
    *,
    clients: int,
    items_per_request: int,
    timeout_s: float,
    deadline_s: float,
    check: Check | None = None,
) -> LoadResult:
    """``clients`` concurrent loops, each sending the next body of ``bodies`` (POST JSON) as soon as
    its previous answer came back, until every body was sent or ``deadline_s`` passed (then no new
    request starts). Throughput = answered 2xx / wall time from the first send to the last answer."""
    res = LoadResult()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    t_start = time.perf_counter()
    stop_at = t_start + deadline_s

    async def one_client() -> None:
        while time.perf_counter() < stop_at:
            try:
                body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            t0 = time.perf_counter()
            try:
                r = await client.post(path, json=body, timeout=timeout_s)
            except httpx.TimeoutException:
                res.timeouts += 1
                continue
            except httpx.HTTPError as exc:
                res.errors += 1
                res.error_samples.append(f"{type(exc).__name__}: {exc}")
                continue
            dt = (time.perf_counter() - t0) * 1000
            res.statuses[r.status_code] = res.statuses.get(r.status_code, 0) + 1
            if r.status_code in SHED_STATUSES:
                res.shed_latencies_ms.append(dt)
                continue
            problem = (None if r.is_success else f"HTTP {r.status_code}: {r.text[:200]}") or (
                check(r) if check is not None else None
            )
            if problem is not None:
                res.errors += 1
                res.error_samples.append(problem)
                continue
            res.latencies_ms.append(dt)
            res.items += items_per_request

    await asyncio.gather(*(one_client() for _ in range(clients)))
    res.wall_s = time.perf_counter() - t_start
    return res


def async_client(base_url: str, connections: int) -> httpx.AsyncClient:
    """An httpx client for loopback load: a pool as large as the number of concurrent clients,
    no proxies from the environment, no retries."""
    check_loopback(base_url)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base_url, limits=limits, trust_env=False, timeout=60.0)


# ------------------------------------------------------- raw HTTP client
class RawConnection:
    """One HTTP/1.1 keep-alive connection on asyncio streams. The load generator shares the cores
    with the servers it measures, so its own cost matters: client CPU per request, measured in one
    run against our service (``--tiny --client httpx`` vs ``--client raw``, load average ~13 on 2
    cores): httpx 1.5-3.1 ms per single-item /embed or /recommend, 3.4-4.5 ms per 32-vector
    answer; this client 0.26-0.63 ms and 1.3-1.6 ms (orjson check included). Bodies are
    pre-encoded bytes; answers may use Content-Length or chunked encoding."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)  # data + CRLF
                if size == 0:
                    break
                parts.append(chunk[:-2])
            data = b"".join(parts)
        else:  # no length: the body runs to the end of the connection
            data = await self.reader.read()
            await self.close()
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, data

    async def close(self) -> None:
        writer, self.writer, self.reader = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


BodyCheck = Callable[[int, bytes], str | None]  # (status, body) -> None when right, else what is wrong


async def run_raw_clients(
    base_url: str,
    path: str,
    bodies: Sequence[bytes],
    *,
    clients: int,
    items_per_request: int,
    timeout_s: float,
    deadline_s: float,
    check: BodyCheck | None = None,
    check_every: int = 1,
) -> LoadResult:
    """As :func:`run_clients`, on :class:`RawConnection` s (one per client). A client that passes
    ``timeout_s`` closes its connection, as a client that gives up does (the server sees it go), and
    opens a new one for its next request. ``check`` runs on every ``check_every``-th answer."""
    check_loopback(base_url)
    url = httpx.URL(base_url)
    host, port = url.host, int(url.port or 80)
    res = LoadResult()
    it = iter(enumerate(bodies))
    t_start = time.perf_counter()
    stop_at = t_start + deadline_s

    async def one_client() -> None:
        conn = RawConnection(host, port)
        try:
            while time.perf_counter() < stop_at:
                nxt = next(it, None)
                if nxt is None:
                    return
                i, body = nxt
                t0 = time.perf_counter()
                try:
                    status, data = await asyncio.wait_for(conn.post(path, body), timeout_s)
                except TimeoutError:
                    res.timeouts += 1
                    await conn.close()
                    continue
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                    res.errors += 1
                    res.error_samples.append(f"{type(exc).__name__}: {exc}")
                    await conn.close()
                    continue
                dt = (time.perf_counter() - t0) * 1000
                res.statuses[status] = res.statuses.get(status, 0) + 1
                if status in SHED_STATUSES:
                    res.shed_latencies_ms.append(dt)
                    continue
                problem = None if 200 <= status < 300 else f"HTTP {status}: {data[:200]!r}"
                if problem is None and check is not None and i % check_every == 0:
                    problem = check(status, data)
                if problem is not None:
                    res.errors += 1
                    res.error_samples.append(problem)
                    continue
                res.latencies_ms.append(dt)
                res.items += items_per_request
        finally:
            await conn.close()

    await asyncio.gather(*(one_client() for _ in range(clients)))
    res.wall_s = time.perf_counter() - t_start
    return res
