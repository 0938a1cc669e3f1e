"""Issue 20's bounded soak: the real service process (uvicorn, tiny set, a real redis-server) under
minutes of mixed loopback traffic from several clients, with a dry run, three reindexes (a changed
item, added items, other added items) and a rollback in between.

Duration: ``RECSVC_SOAK_S`` seconds (default 120, so CI stays within budget); for a longer manual run
set e.g. ``RECSVC_SOAK_S=1800`` or use ``python -m benchmarks.soak --minutes 30`` (same driver, on the
demo set). The RSS of the service process is printed at start, after warm-up and at the end; the only
memory assertion is a generous leak guard: growth after warm-up below 200 MB (the tiny set's process
sits near a few hundred MB, and its three extra collections are a few KB each).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.soak import ALLOWED, SoakDriver, format_summary
from tests.conftest import ADMIN_TOKEN, TinyArtifacts
from tests.integration.test_faults import ServiceProcess, service_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SOAK_S = float(os.environ.get("RECSVC_SOAK_S", "120"))
CLIENTS = int(os.environ.get("RECSVC_SOAK_CLIENTS", "4"))
RSS_GROWTH_LIMIT = 200 * 1024 * 1024


def test_bounded_soak(
    tiny_artifacts: TinyArtifacts, tmp_path: Path, redis_url: str, redis_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    svc = ServiceProcess(service_env(tiny_artifacts, tmp_path, redis_url, redis_prefix), tmp_path)
    try:
        svc.start()
        assert svc.proc is not None
        start_version = svc.http.get("/readyz").json()["index_version"]
        driver = SoakDriver(
            f"http://127.0.0.1:{svc.port}",
            ADMIN_TOKEN,
            tmp_path / "catalogs",
            tiny_artifacts.catalog,
            duration_s=SOAK_S,
            clients=CLIENTS,
            pid=svc.proc.pid,
        )
        res = driver.run()
        assert svc.proc.poll() is None, f"the service died: {svc.log_tail()}"
        ready = svc.http.get("/readyz")
    finally:
        svc.stop()
    summary = res.summary()
    with capsys.disabled():
        print("\n" + format_summary(summary))

    # traffic: every route answered, zero 5xx, every non-2xx an expected documented one
    routes = {route for route, _ in res.counts}
    assert routes == set(ALLOWED), routes
    for route in ALLOWED:
        assert res.counts[(route, 422 if "unknown" in route else 200)] > 0, (route, summary["per_route"])
    assert res.server_errors == 0, summary["non_2xx"]
    assert not res.unexpected, res.unexpected[:10]
    assert res.missing_retry_after == 0  # every 503 said when to come back
    assert "dense" in res.modes

    # the index served throughout: /readyz never failed (ALLOWED has no non-2xx for it) and still 200
    assert ready.status_code == 200 and ready.json()["degraded"] == []
    # the schedule: a dry run that saw the changed item, three reindexes succeeded, a rollback to the first
    assert not res.admin_errors, res.admin_errors
    assert res.dry_run["changed"] == 1 and res.dry_run["added"] == 0 and res.dry_run["removed"] == 0, res.dry_run
    assert [j["status"] for j in res.jobs] == ["succeeded"] * 3, summary["jobs"]
    first, second, third = (j["collection"] for j in res.jobs)
    assert res.rollback["collection"] == first and res.rollback["previous"] == second, res.rollback
    assert ready.json()["index_version"] == third
    # recommendations were served from the start collection and from collections the soak built
    assert start_version in res.index_versions and third in res.index_versions, res.index_versions

    # a leak guard only (see the module docstring); the figures are printed above
    assert res.rss_start > 0 and res.rss_end > 0
    growth = res.rss_end - res.rss_warm
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.0f} MB after warm-up: {summary['rss_mb']}"
