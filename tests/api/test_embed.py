"""POST /embed: vectors through the live (fake) encoder, limits, error shape."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from threading import Thread
from typing import Any

import numpy as np
import pytest
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


# ---------------------------------------------------------------- cheap responses
def test_embed_base64_round_trip(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    items = [{"text": "bold red nail polish"}, {"title": "Gentle shampoo", "brand": "Acme"}]
    floats = client.post("/embed", json={"items": items}).json()
    resp = client.post("/embed", json={"items": items, "encoding": "base64"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["encoding"] == "base64" and floats["encoding"] == "float"
    decoded = np.stack([np.frombuffer(base64.b64decode(s), dtype="<f4") for s in body["vectors"]])
    assert decoded.shape == (2, TEXT_DIM)
    np.testing.assert_allclose(decoded, np.asarray(floats["vectors"], dtype=np.float32), rtol=1e-6)
    assert_error(client.post("/embed", json={"items": items, "encoding": "hex"}), 422, "invalid_request")
    # the OpenAPI schema still documents the response model
    schema = client.get("/openapi.json").json()
    ok = schema["paths"]["/embed"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/EmbedResponse")


# ---------------------------------------------------------------- admission control, deadlines, lanes
class GatedFakeEncoder(FakeEncoder):
    """The test encoder (same vectors as the artifact set's) that blocks until the gate opens and
    records every batch it encodes."""

    def __init__(self) -> None:
        super().__init__(dim=TEXT_DIM)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.entered.set()
        self.gate.wait(20)
        self.calls.append(list(texts))
        return super().encode(texts)


@pytest.fixture
def gated(make_settings: Callable[..., Any]) -> Iterator[Callable[..., tuple[TestClient, GatedFakeEncoder]]]:
    from service.main import create_app
    from service.state import Components

    opened: list[tuple[TestClient, GatedFakeEncoder]] = []

    def _make(**overrides: Any) -> tuple[TestClient, GatedFakeEncoder]:
        enc = GatedFakeEncoder()
        client = TestClient(create_app(make_settings(**overrides), components=Components(encoder=enc)))
        client.__enter__()
        enc.calls.clear()  # start-up checks encode golden texts
        enc.gate.clear()
        enc.entered.clear()
        opened.append((client, enc))
        return client, enc

    yield _make
    for client, enc in reversed(opened):
        enc.gate.set()
        client.__exit__(None, None, None)


def _wait(cond: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def _post_in_thread(client: TestClient, path: str, body: dict[str, Any], **kw: Any) -> tuple[Thread, list[Any]]:
    out: list[Any] = []
    t = Thread(target=lambda: out.append(client.post(path, json=body, **kw)))
    t.start()
    return t, out


def test_full_queue_answers_503_with_retry_after(gated: Callable[..., Any]) -> None:
    client, enc = gated(batcher={"max_batch": 4, "max_queue_texts": 4})
    batcher = client.app.state.recsvc.batcher
    t1, r1 = _post_in_thread(client, "/embed", {"items": [{"text": "running"}]})
    _wait(enc.entered.is_set)
    t2, r2 = _post_in_thread(client, "/embed", {"items": [{"text": f"queued {i}"} for i in range(3)]})
    _wait(lambda: batcher.queued_texts("bulk") == 3)
    resp = client.post("/embed", json={"items": [{"text": "one too many"}, {"text": "two too many"}]})
    err = assert_error(resp, 503, "overloaded")
    assert int(resp.headers["retry-after"]) >= 1
    assert err["details"]["lane"] == "bulk" and err["details"]["limit"] == 4
    enc.gate.set()
    for t in (t1, t2):
        t.join(20)
    assert r1[0].status_code == 200 and r2[0].status_code == 200
    assert not any("too many" in text for call in enc.calls for text in call)
    metrics = client.get("/metrics").text
    assert 'recsvc_encoder_shed_requests_total{lane="bulk"} 1.0' in metrics
    assert 'recsvc_requests_total{method="POST",route="/embed",status="503"} 1.0' in metrics


def test_deadline_header_drops_queued_work_and_answers_504(gated: Callable[..., Any]) -> None:
    client, enc = gated()
    t1, r1 = _post_in_thread(client, "/embed", {"items": [{"text": "running"}]})
    _wait(enc.entered.is_set)
    resp = client.post("/embed", json={"items": [{"text": "abandoned"}]}, headers={"X-Request-Timeout-Ms": "100"})
    err = assert_error(resp, 504, "deadline_exceeded")
    assert err["message"]
    enc.gate.set()
    t1.join(20)
    assert r1[0].status_code == 200
    client.post("/embed", json={"items": [{"text": "after"}]})
    encoded = [text for call in enc.calls for text in call]
    assert "abandoned" not in encoded and "after" in encoded  # dropped before encoding
    metrics = client.get("/metrics").text
    assert 'status="504"' in metrics and 'status="200"' in metrics
    dropped = [line for line in metrics.splitlines() if line.startswith("recsvc_encoder_dropped_texts_total")]
    assert any('lane="bulk"' in line and not line.endswith(" 0.0") for line in dropped)
    for bad in ("soon", "0", "99999999"):
        assert_error(
            client.post("/embed", json={"items": [{"text": "x"}]}, headers={"X-Request-Timeout-Ms": bad}),
            422,
            "invalid_request",
        )


def test_client_disconnect_cancels_queued_work(gated: Callable[..., Any]) -> None:
    client, enc = gated()
    app = client.app
    t1, r1 = _post_in_thread(client, "/embed", {"items": [{"text": "running"}]})
    _wait(enc.entered.is_set)
    body = json.dumps({"items": [{"text": "gone client"}]}).encode()
    sent: list[dict[str, Any]] = []

    async def call() -> None:
        batcher = app.state.recsvc.batcher
        hang_up = asyncio.Event()
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await hang_up.wait()  # the client closes the connection
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/embed",
            "raw_path": b"/embed",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
            "state": {},
        }
        request = asyncio.ensure_future(app(scope, receive, send))
        for _ in range(500):
            if batcher.queued_texts("bulk") == 1:
                break
            await asyncio.sleep(0.01)
        assert batcher.queued_texts("bulk") == 1
        hang_up.set()
        await asyncio.wait_for(request, 10)
        assert batcher.queued_texts("bulk") == 0  # removed from the queue at once

    client.portal.call(call)
    enc.gate.set()
    t1.join(20)
    assert r1[0].status_code == 200
    client.post("/embed", json={"items": [{"text": "after"}]})
    assert "gone client" not in [text for call in enc.calls for text in call]
    assert sent and sent[0]["status"] == 499
    metrics = client.get("/metrics").text
    assert 'recsvc_requests_abandoned_total{reason="disconnect"} 1.0' in metrics
    assert 'route="/embed",status="499"' in metrics


def test_recommend_text_items_go_ahead_of_an_embed_flood(gated: Callable[..., Any]) -> None:
    client, enc = gated(batcher={"max_batch": 4, "max_queue_texts": 10_000}, redis={"url": None, "cache_ttl_s": 0})
    batcher = client.app.state.recsvc.batcher
    t0, _ = _post_in_thread(client, "/embed", {"items": [{"text": "running"}]})
    _wait(enc.entered.is_set)
    flood = [
        _post_in_thread(client, "/embed", {"items": [{"text": f"bulk {i}.{j}"} for j in range(4)]}) for i in range(8)
    ]
    _wait(lambda: batcher.stats.lanes["bulk"].requests == 9)
    tr, rr = _post_in_thread(
        client, "/recommend", {"history": [{"item": {"text": "rose perfume for the evening"}}], "k": 3}
    )
    _wait(lambda: batcher.stats.lanes["interactive"].requests == 1 and batcher.queued_texts("interactive") == 0)
    enc.gate.set()
    for t in (t0, tr, *(t for t, _ in flood)):
        t.join(30)
    assert rr[0].status_code == 200, rr[0].text
    assert all(out[0].status_code == 200 for _, out in flood)
    assert enc.calls[0] == ["running"] and enc.calls[1] == ["rose perfume for the evening"]
    assert 'recsvc_encoder_batch_texts_count{lane="interactive"} 1.0' in client.get("/metrics").text


def test_app_state_embed_keeps_its_plain_signature(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    state = client.app.state.recsvc  # type: ignore[attr-defined]

    async def both() -> tuple[np.ndarray, np.ndarray]:
        return await state.embed(["plain call"]), await state.embed(["plain call"], lane="interactive")

    plain, interactive = client.portal.call(both)  # type: ignore[union-attr]
    expected = FakeEncoder(dim=TEXT_DIM).encode(["plain call"])
    np.testing.assert_allclose(plain, expected, atol=1e-6)
    np.testing.assert_allclose(interactive, expected, atol=1e-6)
