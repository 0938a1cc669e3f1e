"""Secrets in query strings never reach the access log."""

from __future__ import annotations

import logging

from service.api.middleware import RedactSecretsFilter, has_secret_param, install_access_log_redaction, redact_query


def test_redact_query() -> None:
    assert redact_query("/a/b") == "/a/b"
    assert redact_query("/a?token=s3cr3t&page=2") == "/a?token=***&page=2"
    assert redact_query("/a?page=2&Access_Token=x&api%5Fkey=y&password=&q=tokenish") == (
        "/a?page=2&Access_Token=***&api%5Fkey=***&password=***&q=tokenish"
    )
    assert redact_query("/a?client_secret=1;auth=2") == "/a?client_secret=***;auth=***"
    assert redact_query("/a?flag") == "/a?flag"
    assert has_secret_param(["page", "token", "X-Api-Key"]) == ["token", "X-Api-Key"]


def test_filter_rewrites_uvicorn_access_records() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/admin/reindex/x?token=s3cr3t", "1.1", 401), None,
    )  # fmt: skip
    assert RedactSecretsFilter().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "GET /admin/reindex/x?token=*** HTTP/1.1" 401'
    install_access_log_redaction("test.access")
    install_access_log_redaction("test.access")
    assert sum(isinstance(f, RedactSecretsFilter) for f in logging.getLogger("test.access").filters) == 1
