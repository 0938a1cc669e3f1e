"""POST /embed: vectors through the live (fake) encoder, limits, error shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from service.core.items import Item, item_text
from service.encoding.fake import FakeEncoder
from tests.conftest import TEXT_DIM


def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code and body["error"]["message"]
    err: dict[str, Any] = body["error"]
    return err


def test_embed_structured_and_raw_text(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    items = [
        {"title": "Gentle shampoo", "brand": "Acme", "categories": ["Hair"], "features": ["250 ml"]},
        {"text": "bold red nail polish"},
    ]
    resp = client.post("/embed", json={"items": items})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["dim"] == TEXT_DIM and "20260101-000000-tiny" in body["model"]
    vectors = np.asarray(body["vectors"], dtype=np.float32)
    assert vectors.shape == (2, TEXT_DIM)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # the structured item goes through the shared item_text, exactly as the catalog does
    expected_text = item_text(
        Item(item_id="", title="Gentle shampoo", brand="Acme", categories=("Hair",), features=("250 ml",))
    )
    expected = FakeEncoder(dim=TEXT_DIM).encode([expected_text, "bold red nail polish"])
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert body["payloads"] is None


def test_embed_return_payload(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    resp = client.post(
        "/embed", json={"items": [{"title": "Rose toner", "brand": "B"}, {"text": "raw"}], "return_payload": True}
    )
    assert resp.status_code == 200
    payloads = resp.json()["payloads"]
    assert payloads[0]["title"] == "Rose toner" and payloads[0]["brand"] == "B"
    assert payloads[0]["text"].startswith("Rose toner. Brand: B.")
    assert payloads[1] == {"text": "raw"}


def test_embed_empty_list_is_invalid(make_client: Callable[..., TestClient]) -> None:
    err = assert_error(make_client().post("/embed", json={"items": []}), 422, "invalid_request")
    assert any(d["loc"][-1] == "items" for d in err["details"])


def test_embed_limits(make_client: Callable[..., TestClient]) -> None:
    client = make_client(limits={"max_embed_items": 3, "max_text_chars": 50})
    err = assert_error(client.post("/embed", json={"items": [{"text": "x"}] * 4}), 413, "limit_exceeded")
    assert err["details"] == {"field": "items", "limit": 3, "actual": 4}
    err = assert_error(client.post("/embed", json={"items": [{"text": "y" * 51}]}), 413, "limit_exceeded")
    assert err["details"]["field"] == "text length" and err["details"]["limit"] == 50
    err = assert_error(
        client.post("/embed", json={"items": [{"title": "ok", "features": ["z" * 60]}]}), 413, "limit_exceeded"
    )
    assert client.post("/embed", json={"items": [{"text": "y" * 50}] * 3}).status_code == 200


def test_embed_invalid_items(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    bad: dict[str, Any]
    for bad in (
        {"items": [{}]},  # neither title nor text
        {"items": [{"text": "a", "title": "b"}]},  # both forms
        {"items": [{"text": "   "}]},  # blank
        {"items": [{"title": "a", "colour": "red"}]},  # unknown field
        {"items": "not a list"},
        {"items": [{"title": "a"}], "extra": 1},
    ):
        assert_error(client.post("/embed", json=bad), 422, "invalid_request")
    resp = client.post("/embed", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(resp, 422, "invalid_request")


def test_body_size_limit(make_client: Callable[..., TestClient]) -> None:
    client = make_client(limits={"max_request_bytes": 2048})
    err = assert_error(client.post("/embed", json={"items": [{"text": "a" * 5000}]}), 413, "payload_too_large")
    assert err["details"]["limit"] == 2048

    def chunks() -> Any:  # no Content-Length: the limit still holds
        for _ in range(10):
            yield b"x" * 512

    resp = client.post("/embed", content=chunks(), headers={"content-type": "application/json"})
    assert_error(resp, 413, "payload_too_large")
