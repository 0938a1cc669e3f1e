"""schemathesis over the OpenAPI document, against a real service process on a loopback port.

Every route, admin ones with the token; valid and invalid inputs (positive and negative generation);
seeded (derandomized), a fixed number of examples per route. Checked on every response: no 5xx, the
status code is documented, the content type and body match the documented schema (so every 4xx
body is the documented ErrorResponse), documented headers are there, and inputs the schema
forbids are rejected. POST /admin/reindex gets a few examples of its own: each accepted call runs a
real reindex of the tiny set (a second while one runs gets 409).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ADMIN_TOKEN, TinyArtifacts, _free_port, admin_headers

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# Per operation (positive and negative inputs together); FUZZ_EXAMPLES=500 for a longer hunt.
EXAMPLES_PER_ROUTE = int(os.environ.get("FUZZ_EXAMPLES", "60"))
REINDEX_EXAMPLES = 8  # POST /admin/reindex: each accepted call is a real reindex
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
FUZZ_SETTINGS = {
    "derandomize": True,  # seeded: the same examples on every run
    "database": None,  # nothing written to .hypothesis/ in the checkout
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
    "phases": [Phase.explicit, Phase.generate],  # no shrinking: failures are reported as found
}


@pytest.fixture(scope="module")
def service_url(tiny_artifacts: TinyArtifacts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``recsvc-serve``'s one-worker path serving the tiny set on a free loopback port."""
    tmp = tmp_path_factory.mktemp("fuzz")
    port = _free_port()
    log_path = tmp / "serve.log"
    log = log_path.open("w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSVC_")} | {"PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "tests.api.serve_tiny", "--artifacts-root", str(tiny_artifacts.root)]
    proc = subprocess.Popen(
        [*cmd, "--data-dir", str(tmp / "var"), "--port", str(port), "--log-level", "warning"],
        cwd=tmp,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the service did not start:\n{log_path.read_text()}")
        time.sleep(0.2)
    try:
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    text = log_path.read_text()
    assert "Traceback" not in text, text[-4000:]


def _openapi_document() -> dict[str, Any]:
    """The document the service serves (built without starting it: create_app needs no artifacts)."""
    from pydantic import SecretStr

    from service.config import Settings
    from service.main import create_app

    settings = Settings(_env_file=None, admin_token=SecretStr(ADMIN_TOKEN))  # type: ignore[call-arg]
    return create_app(settings).openapi()


DOCUMENT = _openapi_document()
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(modes=["positive", "negative"], deterministic=True)


def test_the_fuzzed_document_is_the_served_one(service_url: str) -> None:
    assert httpx.get(f"{service_url}/openapi.json").json() == DOCUMENT


@schema.exclude(method="POST", path="/admin/reindex").parametrize()
@settings(max_examples=EXAMPLES_PER_ROUTE, **FUZZ_SETTINGS)  # type: ignore[arg-type]
def test_every_route_keeps_its_contract(case: Any, service_url: str) -> None:
    case.call_and_validate(base_url=service_url, headers=admin_headers(), checks=CHECKS, timeout=30)


@schema.include(method="POST", path="/admin/reindex").parametrize()
@settings(max_examples=REINDEX_EXAMPLES, **FUZZ_SETTINGS)  # type: ignore[arg-type]
def test_reindex_route_keeps_its_contract(case: Any, service_url: str) -> None:
    case.call_and_validate(base_url=service_url, headers=admin_headers(), checks=CHECKS, timeout=30)
