"""A bounded soak: minutes of mixed loopback traffic with reindexes and a rollback in between.

    python -m benchmarks.soak --minutes N [--clients 4] [--artifacts DIR] [--json]

Starts the service (``recsvc-serve``, one worker, embedded Qdrant and a catalog directory in a
temporary folder; the set from ``--artifacts``, else ``artifacts/``, else the small demo set built once
into ``var/bench-demo``) and drives it with ``--clients`` threads for ``--minutes``: ``/recommend``
(catalog ids and text items, every mode the set serves, with and without filters), ``/embed``,
``/search``, ``/v1/embeddings``, ``/readyz`` and one deliberately invalid ``/recommend`` (an unknown
item, 422) per round so the error path is soaked too. Meanwhile an admin thread writes catalogs into
the catalog directory and runs: a dry run (a changed item), a reindex with that changed item, a reindex
that adds items, a rollback to the previous collection, and a third reindex that adds other items.

The summary: requests per route and status, every non-2xx (expected: the deliberate 422s and 503
``overloaded`` with ``Retry-After``; anything else, any 5xx or transport error, is listed as
unexpected), the jobs and their end states, the index versions served, the RSS of the service process
(with its children; ``psutil`` when installed, else ``/proc/<pid>/status`` VmRSS) at start, after
warm-up and at the end, and the load average. ``tests/integration/test_soak.py`` runs the same driver
(``SoakDriver``) for ~2 minutes against the tiny test set.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

logger = logging.getLogger("benchmarks.soak")

# what a route may answer besides 2xx during a soak: 503 overloaded (admission control) on the
# POSTs that go through the encoder or the recommender; the probe route answers its documented 422.
ALLOWED: dict[str, set[int]] = {
    "/recommend": {503},
    "/recommend (unknown item)": {422},
    "/embed": {503},
    "/search": {503},
    "/v1/embeddings": {503},
    "/readyz": set(),
}
MODES = ("dense", "generative", "hybrid")


# ------------------------------------------------------------------ RSS
def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            kids += [int(x) for x in text]
    except OSError:
        return kids
    return kids


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` and its descendants (bytes); 0 when it is gone."""
    try:
        import psutil  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            proc = psutil.Process(pid)
            return int(proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True)))
        except psutil.Error:
            return 0
    total = 0
    for p in [pid, *_descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = _children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


# ------------------------------------------------------------------ driver
@dataclass
class SoakResult:
    duration_s: float
    clients: int
    counts: Counter[tuple[str, int]] = field(default_factory=Counter)
    unexpected: list[tuple[str, str]] = field(default_factory=list)
    missing_retry_after: int = 0
    jobs: list[dict[str, Any]] = field(default_factory=list)
    dry_run: dict[str, Any] = field(default_factory=dict)
    rollback: dict[str, Any] = field(default_factory=dict)
    index_versions: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    rss_start: int = 0
    rss_warm: int = 0
    rss_end: int = 0
    load_start: list[float] = field(default_factory=list)
    load_end: list[float] = field(default_factory=list)
    admin_errors: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.counts.values())

    @property
    def server_errors(self) -> int:
        return sum(n for (_, status), n in self.counts.items() if status >= 500 and status != 503)

    def non_2xx(self) -> dict[str, int]:
        return {f"{r} {s}": n for (r, s), n in sorted(self.counts.items()) if not 200 <= s < 300}

    def summary(self) -> dict[str, Any]:
        per_route: dict[str, dict[str, int]] = {}
        for (route, status), n in sorted(self.counts.items()):
            per_route.setdefault(route, {})[str(status)] = n
        mb = 1024 * 1024
        return {
            "duration_s": round(self.duration_s, 1),
            "clients": self.clients,
            "requests": self.requests,
            "requests_per_s": round(self.requests / self.duration_s, 1) if self.duration_s else None,
            "per_route": per_route,
            "non_2xx": self.non_2xx(),
            "unexpected": self.unexpected[:20],
            "unexpected_count": len(self.unexpected),
            "missing_retry_after": self.missing_retry_after,
            "modes": self.modes,
            "jobs": [{k: j.get(k) for k in ("job_id", "status", "stage", "collection", "error")} for j in self.jobs],
            "dry_run": self.dry_run,
            "rollback": self.rollback,
            "index_versions": self.index_versions,
            "admin_errors": self.admin_errors,
            "rss_mb": {
                "start": round(self.rss_start / mb, 1),
                "after_warmup": round(self.rss_warm / mb, 1),
                "end": round(self.rss_end / mb, 1),
                "growth_since_start": round((self.rss_end - self.rss_start) / mb, 1),
                "growth_since_warmup": round((self.rss_end - self.rss_warm) / mb, 1),
            },
            "loadavg_start": self.load_start,
            "loadavg_end": self.load_end,
        }


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class SoakDriver:
    """Mixed traffic from ``clients`` threads plus an admin thread running the reindex schedule.

    ``catalog`` is the served catalog's rows (each a dict with ``item_id``); the schedule's catalogs
    are written into ``catalog_dir`` (the service's RECSVC_CATALOG_DIR) as ``soak-*.jsonl``.
    """

    def __init__(
        self,
        base_url: str,
        admin_token: str,
        catalog_dir: Path,
        catalog: list[dict[str, Any]],
        *,
        duration_s: float,
        clients: int = 4,
        pid: int | None = None,
        job_timeout_s: float = 120.0,
        seed: int = 0,
    ) -> None:
        self.base_url = base_url
        self.admin_headers = {"Authorization": f"Bearer {admin_token}"}
        self.catalog_dir = catalog_dir
        self.catalog = catalog
        self.ids = [str(r["item_id"]) for r in catalog]
        self.duration_s = duration_s
        self.clients = clients
        self.pid = pid
        self.job_timeout_s = job_timeout_s
        self.seed = seed
        self.result = SoakResult(duration_s=duration_s, clients=clients)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._versions: set[str] = set()

    # ---------------------------------------------------------- helpers
    def _record(self, route: str, resp: httpx.Response | None, error: str | None = None) -> None:
        with self._lock:
            if resp is None:
                self.result.counts[(route, 0)] += 1
                self.result.unexpected.append((route, f"transport error: {error}"))
                return
            status = resp.status_code
            self.result.counts[(route, status)] += 1
            if not 200 <= status < 300 and status not in ALLOWED.get(route, set()):
                self.result.unexpected.append((route, f"{status} {resp.text[:300]}"))
            if status == 503 and "retry-after" not in resp.headers:
                self.result.missing_retry_after += 1

    def _call(self, http: httpx.Client, route: str, method: str, path: str, **kw: Any) -> httpx.Response | None:
        try:
            resp = http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            self._record(route, None, repr(exc))
            return None
        self._record(route, resp)
        return resp

    def served_modes(self) -> list[str]:
        """The modes the set serves: those a probe /recommend answers 200 for."""
        modes = []
        with httpx.Client(base_url=self.base_url, timeout=30, trust_env=False) as http:
            for mode in MODES:
                r = http.post("/recommend", json={"history": self.ids[:2], "k": 3, "mode": mode})
                if r.status_code == 200:
                    modes.append(mode)
        return modes

    # ---------------------------------------------------------- traffic
    def _client(self, i: int, modes: list[str]) -> None:
        rng = random.Random(self.seed * 1000 + i)
        with httpx.Client(base_url=self.base_url, timeout=60, trust_env=False) as http:
            n = 0
            while not self._stop.is_set():
                n += 1
                mode = modes[n % len(modes)]
                hist: list[Any] = rng.sample(self.ids, k=min(len(self.ids), rng.randint(1, 5)))
                body: dict[str, Any] = {"history": hist, "k": rng.choice((3, 5, 10)), "mode": mode}
                if n % 3 == 0:
                    body["filters"] = {"price_max": 1000.0}
                r = self._call(http, "/recommend", "POST", "/recommend", json=body)
                if r is not None and r.status_code == 200:
                    with self._lock:
                        self._versions.add(r.json()["index_version"])
                text_hist = [{"item": {"title": f"soak text item {i}-{n}", "description": "a text history entry"}}]
                self._call(http, "/recommend", "POST", "/recommend", json={"history": [*hist[:2], *text_hist], "k": 5})
                texts = [f"soak text {i} {n} {j} " + "word " * rng.randint(1, 30) for j in range(rng.randint(1, 8))]
                self._call(http, "/embed", "POST", "/embed", json={"items": [{"text": t} for t in texts]})
                self._call(http, "/search", "POST", "/search", json={"query": f"item {n % 50}", "k": 5})
                if n % 2 == 0:
                    self._call(http, "/search", "POST", "/search", json={"item_id": rng.choice(self.ids), "k": 5})
                enc = "base64" if n % 2 else "float"
                body = {"input": texts[:3], "model": "recsvc", "encoding_format": enc}
                self._call(http, "/v1/embeddings", "POST", "/v1/embeddings", json=body)
                r = self._call(http, "/readyz", "GET", "/readyz")
                if r is not None and r.status_code == 200:
                    with self._lock:
                        self._versions.add(r.json().get("index_version") or "")
                if n % 5 == 0:
                    bad = {"history": [f"NO-SUCH-ITEM-{n}"], "k": 3}
                    self._call(http, "/recommend (unknown item)", "POST", "/recommend", json=bad)

    # ---------------------------------------------------------- admin schedule
    def _write_catalog(self, name: str, rows: list[dict[str, Any]]) -> str:
        self.catalog_dir.mkdir(parents=True, exist_ok=True)
        path = self.catalog_dir / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return name

    def _wait_job(self, http: httpx.Client, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.job_timeout_s
        while True:
            job: dict[str, Any] = http.get(f"/admin/reindex/{job_id}", headers=self.admin_headers).json()
            if job["status"] not in ("queued", "running") or time.monotonic() > deadline:
                return job
            time.sleep(0.2)

    def _reindex(self, http: httpx.Client, name: str) -> dict[str, Any]:
        r = http.post("/admin/reindex", json={"catalog_path": name}, headers=self.admin_headers)
        if r.status_code != 202:
            self.result.admin_errors.append(f"reindex {name}: {r.status_code} {r.text[:300]}")
            return {}
        job = self._wait_job(http, r.json()["job_id"])
        self.result.jobs.append(job)
        return job

    def _sleep_until(self, t0: float, frac: float) -> bool:
        while time.monotonic() - t0 < frac * self.duration_s:
            if self._stop.wait(0.2):
                return False
        return True

    def _admin(self, t0: float) -> None:
        changed = [dict(r) for r in self.catalog]
        changed[0]["title"] = f"{changed[0].get('title', '')} (changed by the soak)"
        grown = [*changed, *({"item_id": f"SOAK-A{j:03d}", "title": f"soak added item {j}"} for j in range(12))]
        other = [*self.catalog, *({"item_id": f"SOAK-B{j:03d}", "title": f"soak other item {j}"} for j in range(8))]
        with httpx.Client(base_url=self.base_url, timeout=60, trust_env=False) as http:
            try:
                if not self._sleep_until(t0, 0.12):
                    return
                name = self._write_catalog("soak-changed.jsonl", changed)
                dry = {"catalog_path": name, "dry_run": True}
                r = http.post("/admin/reindex", json=dry, headers=self.admin_headers)
                if r.status_code == 200:
                    self.result.dry_run = r.json()
                else:
                    self.result.admin_errors.append(f"dry run: {r.status_code} {r.text[:300]}")
                if not self._sleep_until(t0, 0.2):
                    return
                first = self._reindex(http, name)
                if not self._sleep_until(t0, 0.4):
                    return
                self._reindex(http, self._write_catalog("soak-grown.jsonl", grown))
                if not self._sleep_until(t0, 0.6):
                    return
                r = http.post("/admin/rollback", json={}, headers=self.admin_headers)
                if r.status_code == 200:
                    self.result.rollback = r.json()
                    if first and r.json()["collection"] != first.get("collection"):
                        self.result.admin_errors.append(f"rollback served {r.json()} not {first.get('collection')}")
                else:
                    self.result.admin_errors.append(f"rollback: {r.status_code} {r.text[:300]}")
                if not self._sleep_until(t0, 0.75):
                    return
                self._reindex(http, self._write_catalog("soak-other.jsonl", other))
            except Exception as exc:  # reported, not raised: the traffic threads must still be stopped
                logger.exception("soak admin thread failed")
                self.result.admin_errors.append(f"admin thread: {exc!r}")

    # ---------------------------------------------------------- run
    def run(self, progress: Callable[[str], None] | None = None) -> SoakResult:
        res = self.result
        res.modes = self.served_modes()
        res.load_start = _loadavg()
        if self.pid is not None:
            res.rss_start = rss_bytes(self.pid)
        threads = [threading.Thread(target=self._client, args=(i, res.modes), daemon=True) for i in range(self.clients)]
        t0 = time.monotonic()
        admin = threading.Thread(target=self._admin, args=(t0,), daemon=True)
        for t in [*threads, admin]:
            t.start()
        warm_at = t0 + min(0.1 * self.duration_s, 30.0)
        warm_taken = False
        next_report = t0 + 30
        try:
            while time.monotonic() - t0 < self.duration_s:
                time.sleep(0.5)
                now = time.monotonic()
                if not warm_taken and now >= warm_at and self.pid is not None:
                    res.rss_warm, warm_taken = rss_bytes(self.pid), True
                if progress is not None and now >= next_report:
                    next_report += 30
                    rss = rss_bytes(self.pid) / 2**20 if self.pid is not None else 0.0
                    progress(f"{now - t0:.0f}s: {res.requests} requests, rss {rss:.0f} MB, load {_loadavg()}")
        finally:
            self._stop.set()
            for t in threads:
                t.join(timeout=120)
        admin.join(timeout=self.job_timeout_s * 2)
        if admin.is_alive():
            res.admin_errors.append("admin thread did not finish")
        res.duration_s = time.monotonic() - t0
        if self.pid is not None:
            res.rss_end = rss_bytes(self.pid)
            res.rss_warm = res.rss_warm or res.rss_start
        res.load_end = _loadavg()
        res.index_versions = sorted(v for v in self._versions if v)
        return res


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"soak: {s['duration_s']}s, {s['clients']} clients, {s['requests']} requests "
        f"({s['requests_per_s']}/s), modes {s['modes']}",
        "per route: " + "; ".join(f"{r} {c}" for r, c in s["per_route"].items()),
        f"non-2xx: {s['non_2xx'] or 'none'}; unexpected: {s['unexpected_count']} {s['unexpected'][:5]}",
        "jobs: " + ", ".join(f"{j['status']}/{j['stage']} -> {j['collection']}" for j in s["jobs"]),
        f"dry run: {s['dry_run']}",
        f"rollback: {s['rollback']}",
        f"index versions served: {s['index_versions']}",
        f"admin errors: {s['admin_errors'] or 'none'}",
        f"RSS MB: {s['rss_mb']}",
        f"load average: start {s['loadavg_start']}, end {s['loadavg_end']}",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ CLI
def main(argv: list[str] | None = None) -> int:
    from benchmarks._artifacts import artifact_set
    from benchmarks.load import start_ours

    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=2.0, help="How long to drive traffic (default 2).")
    p.add_argument("--clients", type=int, default=4, help="Concurrent client threads (default 4).")
    p.add_argument("--artifacts", type=Path, default=None, help="Artifact set (default: artifacts/ or the demo).")
    p.add_argument("--threads", type=int, default=2, help="Encoder threads of the service (default 2).")
    p.add_argument("--json", action="store_true", help="Print the summary as JSON.")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    with artifact_set(args.artifacts) as root, tempfile.TemporaryDirectory(prefix="recsvc-soak-") as tmp:
        work = Path(tmp)
        catalogs = work / "catalogs"
        catalogs.mkdir()
        rows = _catalog_rows(root)
        system = start_ours(root, work, args.threads, {"RECSVC_CATALOG_DIR": str(catalogs)}, timeout_s=600)
        try:
            env = system.server.env or {}
            assert system.server.pid is not None
            driver = SoakDriver(
                system.server.base_url,
                env["RECSVC_ADMIN_TOKEN"],
                catalogs,
                rows,
                duration_s=args.minutes * 60,
                clients=args.clients,
                pid=system.server.pid,
                job_timeout_s=1800,
            )
            res = driver.run(progress=logger.info)
        finally:
            system.server.stop()
    summary = res.summary()
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0 if not res.unexpected and not res.server_errors and not res.admin_errors else 1


def _catalog_rows(root: Path) -> list[dict[str, Any]]:
    """The set's catalog rows (its ``catalog/items.jsonl``)."""
    path = root / "catalog" / "items.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


if __name__ == "__main__":
    sys.exit(main())
