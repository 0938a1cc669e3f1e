"""POST /v1/embeddings through the official ``openai`` client against the live service (uvicorn on
a loopback port), plus the wire format and OpenAI's error shape checked over plain HTTP."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from service.encoding.fake import FakeEncoder
from tests.api.test_embed import assert_error
from tests.conftest import TEXT_DIM
from tests.live import live_service  # noqa: F401  (fixture)

TEXTS = ["gentle hair shampoo", "  bold red nail polish  ", "Skin product 3 fresh"]


def _client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key="not-checked", max_retries=0, timeout=30)


def _openai_error(resp: httpx.Response, status: int, code: str, param: str | None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    err: dict[str, Any] = body["error"]
    assert err["code"] == code and err["param"] == param and err["message"], err
    return err


@pytest.fixture
def base(live_service: Callable[..., str]) -> str:  # noqa: F811
    return live_service()


def test_openai_client_float_matches_embed(base: str) -> None:
    client = _client(base)
    models = [m.id for m in client.models.list().data]
    assert models[0].endswith("@20260101-000000-tiny") and "recsvc" in models
    resp = client.embeddings.create(input=TEXTS, model=models[0], encoding_format="float")
    assert resp.object == "list" and resp.model == models[0]
    assert [d.index for d in resp.data] == [0, 1, 2]
    got = np.asarray([d.embedding for d in resp.data], dtype=np.float32)  # [3, T]
    assert got.shape == (3, TEXT_DIM)
    # same encoder path as /embed with raw text items (stripped the same way)
    embed = httpx.post(f"{base}/embed", json={"items": [{"text": t} for t in TEXTS]}).json()
    np.testing.assert_allclose(got, np.asarray(embed["vectors"], dtype=np.float32), atol=1e-6)
    np.testing.assert_allclose(got, FakeEncoder(dim=TEXT_DIM).encode([t.strip() for t in TEXTS]), atol=1e-6)
    # usage: the encoder's tokens (the test encoder's word tokens)
    enc = FakeEncoder(dim=TEXT_DIM)
    tokens = sum(len(enc.tokens(t)) for t in TEXTS)
    assert resp.usage.prompt_tokens == tokens == resp.usage.total_tokens == 3 + 4 + 4


def test_openai_client_base64_default_and_single_string(base: str) -> None:
    client = _client(base)
    # Without encoding_format the openai client asks for base64 and decodes it itself.
    default = client.embeddings.create(input=TEXTS, model="recsvc")
    floats = client.embeddings.create(input=TEXTS, model="recsvc", encoding_format="float")
    np.testing.assert_array_equal(
        np.asarray([d.embedding for d in default.data], dtype=np.float32),
        np.asarray([d.embedding for d in floats.data], dtype=np.float32),
    )
    one = client.embeddings.create(input="bold red nail polish", model="recsvc", encoding_format="float")
    assert len(one.data) == 1
    np.testing.assert_allclose(one.data[0].embedding, floats.data[1].embedding, atol=1e-7)
    same_dim = client.embeddings.create(input="x y", model="recsvc", dimensions=TEXT_DIM, encoding_format="float")
    assert len(same_dim.data[0].embedding) == TEXT_DIM


def test_base64_is_little_endian_float32_on_the_wire(base: str) -> None:
    body = {"input": ["gentle hair shampoo"], "model": "recsvc", "encoding_format": "base64"}
    resp = httpx.post(f"{base}/v1/embeddings", json=body)
    assert resp.status_code == 200, resp.text
    raw = base64.b64decode(resp.json()["data"][0]["embedding"])
    assert len(raw) == 4 * TEXT_DIM
    vec = np.frombuffer(raw, dtype="<f4")
    np.testing.assert_allclose(vec, FakeEncoder(dim=TEXT_DIM).encode(["gentle hair shampoo"])[0], atol=0)


def test_openai_client_raises_its_errors(base: str) -> None:
    client = _client(base)
    with pytest.raises(openai.BadRequestError) as bad:
        client.embeddings.create(input="a", model="recsvc", dimensions=8)
    err = bad.value.body
    assert isinstance(err, dict)
    assert err["code"] == "unsupported_dimensions" and err["param"] == "dimensions"
    assert err["type"] == "invalid_request_error" and str(TEXT_DIM) in err["message"]
    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(input="a", model="text-embedding-3-small")
    assert isinstance(missing.value.body, dict) and missing.value.body["code"] == "model_not_found"
    assert "recsvc" in missing.value.body["message"]


def test_openai_error_shape_on_this_route_only(base: str) -> None:
    url = f"{base}/v1/embeddings"
    _openai_error(httpx.post(url, json={"model": "recsvc"}), 400, "invalid_request", "input")
    _openai_error(httpx.post(url, json={"input": [], "model": "recsvc"}), 400, "invalid_request", "input")
    _openai_error(httpx.post(url, json={"input": ["ok", "  "], "model": "recsvc"}), 400, "invalid_request", "input")
    err = _openai_error(
        httpx.post(url, json={"input": [[1, 2, 3]], "model": "recsvc"}), 400, "unsupported_input", "input"
    )
    assert "token arrays" in err["message"]
    fmt = {"input": "a", "model": "recsvc", "encoding_format": "int8"}
    _openai_error(httpx.post(url, json=fmt), 400, "invalid_request", "encoding_format")
    _openai_error(httpx.post(url, json={"input": "a", "model": "recsvc", "extra": 1}), 400, "invalid_request", "extra")
    bad_json = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert _openai_error(bad_json, 400, "invalid_request", None)["type"] == "invalid_request_error"
    # every other route keeps the service's shape
    assert_error(httpx.post(f"{base}/embed", json={"items": []}), 422, "invalid_request")


def test_same_limits_as_embed(live_service: Callable[..., str]) -> None:  # noqa: F811
    base = live_service(limits={"max_embed_items": 2, "max_text_chars": 20})
    url = f"{base}/v1/embeddings"
    err = _openai_error(
        httpx.post(url, json={"input": ["a", "b", "c"], "model": "recsvc"}), 413, "limit_exceeded", "input"
    )
    assert "items: 3 exceeds the limit of 2" in err["message"]
    long = {"input": "x" * 21, "model": "recsvc"}
    assert "text length" in _openai_error(httpx.post(url, json=long), 413, "limit_exceeded", "input")["message"]
    ok = httpx.post(url, json={"input": ["a", "b"], "model": "recsvc"})
    assert ok.status_code == 200 and len(ok.json()["data"]) == 2
    # /embed answers the same request sizes the same way (in its own shape)
    assert_error(httpx.post(f"{base}/embed", json={"items": [{"text": "a"}] * 3}), 413, "limit_exceeded")
