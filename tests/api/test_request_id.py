"""X-Request-ID: accepted when safe, made otherwise, returned on every response, on every log line of
the request (and of the reindex job it started); RECSVC_LOG_FORMAT json/text."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.logging_setup import (
    JsonFormatter,
    RequestIdFilter,
    configure_logging,
    make_formatter,
    request_id,
    valid_request_id,
)
from tests.api.test_admin import wait_job
from tests.conftest import admin_headers

GENERATED = re.compile(r"^[0-9a-f]{32}$")


class _Capture(logging.StreamHandler):
    """A subclass, so configure_logging (run by create_app) leaves its format alone."""


@pytest.fixture
def json_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Root handler with the service's filter and JSON format; returns the parsed lines so far."""
    buf = io.StringIO()
    handler = _Capture(buf)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
    finally:
        root.removeHandler(handler)


def test_request_id_made_accepted_or_replaced(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    made = client.get("/healthz").headers["x-request-id"]
    assert GENERATED.match(made)
    assert client.get("/healthz").headers["x-request-id"] != made
    given = "checkout-7f3a.b:2_x"
    assert client.get("/healthz", headers={"X-Request-ID": given}).headers["x-request-id"] == given
    for bad in ("x" * 129, "has space", "semi;colon", 'quote"', "ünï"):
        got = client.get("/healthz", headers={"X-Request-ID": bad.encode()}).headers["x-request-id"]
        assert GENERATED.match(got), bad
    # on errors too: validation, domain error, body size limit, unknown route
    assert client.post("/recommend", json={}, headers={"X-Request-ID": "r1"}).headers["x-request-id"] == "r1"
    assert (
        client.post("/recommend", json={"history": ["nope"]}, headers={"X-Request-ID": "r2"}).headers["x-request-id"]
        == "r2"
    )
    big = client.post(
        "/embed", content=b"x" * 2_000_000, headers={"X-Request-ID": "r3", "content-type": "application/json"}
    )
    assert big.status_code == 413 and big.headers["x-request-id"] == "r3"
    assert client.get("/nowhere", headers={"X-Request-ID": "r4"}).headers["x-request-id"] == "r4"
    assert client.post("/v1/embeddings", json={}, headers={"X-Request-ID": "r5"}).headers["x-request-id"] == "r5"


def test_every_log_line_of_a_request_names_it(
    make_client: Callable[..., TestClient], json_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    client = make_client()
    resp = client.post("/admin/reindex", headers={**admin_headers(), "X-Request-ID": "reindex-req-1"})
    assert resp.status_code == 202
    assert wait_job(client, resp.json()["job_id"])["status"] == "succeeded"
    client.post("/search", json={"query": "shampoo"}, headers={"X-Request-ID": "search-req-2"})
    lines = json_lines()
    assert all(set(line) >= {"ts", "level", "logger", "message", "request_id"} for line in lines)
    job_id = resp.json()["job_id"]
    job_lines = [ln for ln in lines if ln["logger"] == "service.reindex" and job_id in ln["message"]]
    assert job_lines and all(ln["request_id"] == "reindex-req-1" for ln in job_lines), job_lines
    access = [ln for ln in lines if ln["logger"] == "service.access"]
    by_id = {ln["request_id"]: ln for ln in access}
    assert by_id["reindex-req-1"]["route"] == "/admin/reindex" and by_id["reindex-req-1"]["status"] == 202
    assert by_id["search-req-2"]["path"] == "/search" and by_id["search-req-2"]["status"] == 200
    assert by_id["search-req-2"]["duration_ms"] >= 0
    # polling the job: one access line per request, each with its own made-up id
    polls = [ln for ln in access if ln["route"] == "/admin/reindex/{job_id}"]
    assert polls and all(GENERATED.match(ln["request_id"]) for ln in polls)
    # startup (the bootstrap index build) ran outside any request
    boot = [ln for ln in lines if ln["logger"] == "service.reindex" and "bootstrap" in ln["message"]]
    assert boot and all(ln["request_id"] is None for ln in boot)
    # nothing outside a request carries an id
    logging.getLogger("service.test").info("outside")
    assert json_lines()[-1]["request_id"] is None


def test_text_format_and_settings(make_settings: Callable[..., Any]) -> None:
    record = logging.LogRecord("service.x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    token = request_id.set("abc-123")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id.reset(token)
    assert make_formatter("text").format(record).endswith("INFO service.x [abc-123]: hello world")
    assert json.loads(make_formatter("json").format(record))["request_id"] == "abc-123"
    with pytest.raises(ValueError):
        make_formatter("xml")  # type: ignore[arg-type]
    assert make_settings(log_format="json").log_format == "json"
    with pytest.raises(ValueError):
        make_settings(log_format="yaml")
    assert valid_request_id("a" * 128) and not valid_request_id("a" * 129) and not valid_request_id("")


def test_configure_logging_formats_console_handlers() -> None:
    logger = logging.getLogger("uvicorn.access")
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)  # what uvicorn's log config installs
    logger.addHandler(handler)
    before = logger.propagate
    logger.propagate = False
    try:
        configure_logging("json")
        token = request_id.set("req-9")
        try:
            logger.warning("GET /x 200")
        finally:
            request_id.reset(token)
        line = json.loads(buf.getvalue().splitlines()[-1])
        assert line["request_id"] == "req-9" and line["logger"] == "uvicorn.access"
        configure_logging("text")
        logger.warning("plain")
        assert buf.getvalue().splitlines()[-1].endswith("WARNING uvicorn.access [-]: plain")
        assert sum(isinstance(f, RequestIdFilter) for f in handler.filters) == 1
    finally:
        logger.removeHandler(handler)
        logger.propagate = before


def test_an_unhandled_error_is_a_500_with_the_id_in_header_and_log(
    make_client: Callable[..., TestClient], json_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    client = make_client()

    async def boom() -> None:
        raise RuntimeError("internal detail that must not leak")

    client.app.add_api_route("/boom", boom)  # type: ignore[attr-defined]
    resp = client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert resp.status_code == 500 and resp.headers["x-request-id"] == "boom-1"
    assert resp.json() == {"error": {"code": "internal_error", "message": "internal server error", "details": None}}
    lines = [ln for ln in json_lines() if ln["request_id"] == "boom-1"]
    errors = [ln for ln in lines if ln["level"] == "ERROR"]
    assert errors and "RuntimeError: internal detail" in errors[0]["exc_info"]
    assert any(ln["logger"] == "service.access" and ln["status"] == 500 for ln in lines)
    metrics = client.get("/metrics").text
    assert 'recsvc_requests_total{method="GET",route="/boom",status="500"} 1.0' in metrics
