"""The one error contract: documented in OpenAPI for every route, configured limits as 413 with the
configured number, strict types, the Content-Type error, no secrets in URLs, /docs offline."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.api.test_embed import assert_error
from tests.conftest import admin_headers

ERROR_REF = "#/components/schemas/ErrorResponse"


def test_every_error_response_is_documented_with_the_one_shape(make_client: Callable[..., TestClient]) -> None:
    spec = make_client().get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert schemas["ErrorResponse"]["required"] == ["error"]
    assert set(schemas["ErrorInfo"]["required"]) == {"code", "message"}
    assert set(schemas["ErrorInfo"]["properties"]) == {"code", "message", "details"}
    seen: dict[tuple[str, str], set[str]] = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            codes = {c for c in op["responses"] if int(c) >= 400}
            seen[(method.upper(), path)] = codes
            assert "500" in codes, (method, path)
            for code in codes:
                media = op["responses"][code]["content"]["application/json"]
                if (method, path, code) == ("get", "/readyz", "503"):  # the probe's status body
                    continue
                if path.startswith("/v1/"):  # OpenAI-compatible routes answer in OpenAI's error shape
                    refs = [media["schema"].get("$ref")] + [a["$ref"] for a in media["schema"].get("anyOf", [])]
                    assert "#/components/schemas/OpenAIErrorResponse" in refs, (method, path, code)
                    continue
                assert media["schema"] == {"$ref": ERROR_REF}, (method, path, code)
                assert media["examples"], (method, path, code)
                for example in media["examples"].values():  # (the document drops null `details`)
                    assert set(example["value"]) == {"error"}
                    assert {"code", "message"} <= set(example["value"]["error"]) <= {"code", "message", "details"}
    for route in (("POST", "/embed"), ("POST", "/recommend"), ("POST", "/admin/reindex")):
        assert {"413", "415", "422", "503"} <= seen[route], route
    for route in (("POST", "/embed"), ("POST", "/recommend"), ("POST", "/search"), ("POST", "/v1/embeddings")):
        assert "504" in seen[route], route  # every POST outside /admin has a deadline
    assert "504" not in seen[("POST", "/admin/reindex")]
    assert {"401", "404", "422", "503"} <= seen[("GET", "/admin/reindex/{job_id}")]
    assert {"401", "409"} <= seen[("POST", "/admin/reindex")]


def test_far_over_the_limits_is_413_with_the_configured_number(make_client: Callable[..., TestClient]) -> None:
    client = make_client(limits={"max_request_bytes": 5_000_000})
    cases: list[tuple[str, dict[str, Any], str, int, int]] = [
        ("/embed", {"items": [{"text": "x"}] * 300}, "items", 256, 300),
        ("/embed", {"items": [{"text": "x"}] * 10_000}, "items", 256, 10_000),
        ("/embed", {"items": [{"text": "y" * 200_000}]}, "text length", 10_000, 200_000),
        ("/recommend", {"history": ["P0001"] * 201}, "history", 200, 201),
        ("/recommend", {"history": ["P0001"] * 10_000}, "history", 200, 10_000),
        ("/recommend", {"history": ["P0001"], "k": 101}, "k", 100, 101),
        ("/recommend", {"history": ["P0001"], "k": 5000}, "k", 100, 5000),
        ("/recommend", {"history": [{"item": {"title": "z" * 150_000}}]}, "text length", 10_000, 150_000),
    ]
    for path, body, field, limit, actual in cases:
        err = assert_error(client.post(path, json=body), 413, "limit_exceeded")
        assert err["details"] == {"field": field, "limit": limit, "actual": actual}, (path, field, actual)
        assert f"exceeds the limit of {limit}" in err["message"]


def test_the_configured_limit_is_the_one_quoted(make_client: Callable[..., TestClient]) -> None:
    small = make_client(limits={"max_k": 7, "max_embed_items": 2})
    assert (
        assert_error(small.post("/recommend", json={"history": ["P0001"], "k": 8}), 413, "limit_exceeded")["details"][
            "limit"
        ]
        == 7
    )
    err = assert_error(small.post("/embed", json={"items": [{"text": "a"}] * 5000}), 413, "limit_exceeded")
    assert err["details"]["limit"] == 2


def test_numbers_and_booleans_are_strict(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for body in (
        {"history": ["P0001"], "k": True},
        {"history": ["P0001"], "k": "5"},
        {"history": ["P0001"], "k": 5.5},
        {"history": ["P0001"], "exclude_history": 1},
        {"history": ["P0001"], "exclude_history": "true"},
        {"history": ["P0001"], "filters": {"price_max": True}},
        {"history": ["P0001"], "filters": {"price_min": "3"}},
    ):
        err = assert_error(client.post("/recommend", json=body), 422, "invalid_request")
        assert err["details"], body
    assert_error(client.post("/embed", json={"items": [{"text": "a"}], "return_payload": 1}), 422, "invalid_request")
    ok = client.post("/recommend", json={"history": ["P0001"], "k": 3, "filters": {"price_max": 40}})
    assert ok.status_code == 200 and len(ok.json()["items"]) <= 3


def test_a_body_not_sent_as_json_names_the_content_type_header(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    body = b'{"history": ["P0001"]}'
    for headers, got in (
        ({}, None),
        ({"content-type": "text/plain"}, "text/plain"),
        ({"content-type": "application/x-www-form-urlencoded"}, "application/x-www-form-urlencoded"),
    ):
        err = assert_error(client.post("/recommend", content=body, headers=headers), 415, "unsupported_media_type")
        assert "Content-Type: application/json" in err["message"]
        assert err["details"] == {"header": "Content-Type", "expected": "application/json", "got": got}
    assert client.post("/recommend", content=body, headers={"content-type": "application/json"}).status_code == 200
    ok = client.post("/recommend", content=body, headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200
    err = assert_error(client.post("/embed", content=b"items=1", headers={}), 415, "unsupported_media_type")
    assert "no Content-Type header" in err["message"]
    err = assert_error(client.post("/recommend"), 422, "invalid_request")  # no body at all
    assert "no body" in err["message"] and "Content-Type: application/json" in err["message"]


def test_tokens_in_the_url_are_refused(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for query in ("token=abc", "access_token=abc", "api_key=abc", "password=x"):
        resp = client.get(f"/admin/reindex/x?{query}", headers=admin_headers())
        err = assert_error(resp, 401, "unauthorized")
        assert "Authorization: Bearer" in err["message"] and "abc" not in resp.text
    assert client.get("/admin/reindex/x?page=1", headers=admin_headers()).status_code == 404


def test_docs_work_offline(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for page in ("/docs", "/redoc"):
        resp = client.get(page)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
        html = resp.text
        assert "http://" not in html and "https://" not in html and "//cdn" not in html, page
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets, page
        for url in assets:
            assert url.startswith("/static/docs/"), url
            asset = client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 1000, url
        assert "url: '/openapi.json'" in html or 'spec-url="/openapi.json"' in html
    js = client.get("/static/docs/swagger-ui-bundle.js")
    assert "javascript" in js.headers["content-type"] and b"SwaggerUIBundle" in js.content
    assert 'PACKAGE_VERSION:"5.' in js.text  # Swagger UI 5 renders OpenAPI 3.1 (FastAPI's version)
    assert client.get("/docs/oauth2-redirect").status_code == 200


def test_a_body_that_is_not_utf8_is_an_invalid_request(make_client: Callable[..., TestClient]) -> None:
    """Found by schemathesis: FastAPI answered 400 'There was an error parsing the body' (undocumented)."""
    client = make_client()
    for path in ("/embed", "/recommend"):
        resp = client.post(path, content=b"\x01\xff\xfeh", headers={"content-type": "application/json"})
        err = assert_error(resp, 422, "invalid_request")
        assert "not UTF-8" in err["message"]
