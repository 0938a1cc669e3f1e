"""The one-worker ``recsvc-serve`` path in a real process: it serves, keeps secrets sent in URLs out of
the access log, and shuts down cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, TinyArtifacts, _free_port, admin_headers

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_serves_redacts_query_secrets_and_stops_on_sigterm(tiny_artifacts: TinyArtifacts, tmp_path: Path) -> None:
    port = _free_port()
    log = (tmp_path / "serve.log").open("w+")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSVC_")} | {"PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "tests.api.serve_tiny", "--artifacts-root", str(tiny_artifacts.root)]
    proc = subprocess.Popen(
        [*cmd, "--data-dir", str(tmp_path / "var"), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, Path(log.name).read_text()
            time.sleep(0.2)
        assert httpx.post(f"{base}/recommend", json={"history": ["P0001"], "k": 2}).status_code == 200
        secret = "leaky-0123456789-secret"
        resp = httpx.get(f"{base}/admin/reindex/x", params={"token": secret, "page": "2"})
        assert resp.status_code == 401 and "Authorization: Bearer" in resp.json()["error"]["message"]
        assert secret not in resp.text
        # the refusal holds even with a valid header: the URL leaked the token
        resp = httpx.get(f"{base}/admin/reindex/x?access_token={ADMIN_TOKEN}", headers=admin_headers())
        assert resp.status_code == 401
        assert httpx.get(f"{base}/admin/reindex/x", headers=admin_headers()).status_code == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = Path(log.name).read_text()
    assert "GET /admin/reindex/x?token=***&page=2" in text, text
    assert "access_token=***" in text
    assert secret not in text and ADMIN_TOKEN not in text
    assert "Traceback" not in text
    assert "Application shutdown complete." in text  # the app's lifespan was closed on SIGTERM
