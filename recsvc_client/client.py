"""``RecsvcClient`` and ``AsyncRecsvcClient``: every endpoint of recsvc, typed results, timeouts,
retries with backoff (``Retry-After`` honoured) and typed errors carrying the service's body.

Both classes share the request building and response parsing below; they differ only in
sending (``httpx.Client`` vs ``httpx.AsyncClient``) and sleeping between retries. Every call
sends one ``X-Request-ID`` (kept across its retries) so its log lines can be found; errors
carry it as ``request_id``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import struct
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from recsvc_client.errors import (
    APIStatusError,
    RecsvcConnectionError,
    RecsvcTimeoutError,
    error_from_response,
)
from recsvc_client.results import (
    Embeddings,
    EmbedResult,
    Filters,
    Health,
    Mode,
    Readiness,
    RecommendResult,
    ReindexJob,
    SearchResult,
)
from recsvc_client.retry import RetryPolicy

T = TypeVar("T")
REQUEST_ID_HEADER = "X-Request-ID"
DEFAULT_TIMEOUT = 30.0

ItemInput = str | Mapping[str, Any]
HistoryInput = str | Mapping[str, Any]


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One API call: what to send, which statuses are answers, how to read the answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    admin: bool = False
    idempotent: bool = True  # a read failure may be retried (the call changes nothing)
    ok: tuple[int, ...] = (200,)
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class _Retry:
    """Attempt the call again after ``delay`` seconds (the policy's ``on_retry`` has been told)."""

    delay: float


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text


def _status_error(resp: httpx.Response, request_id: str) -> APIStatusError:
    return error_from_response(resp.status_code, _json(resp), resp.headers.get(REQUEST_ID_HEADER, request_id))


def _transport_error(exc: httpx.TransportError, call: _Call[Any]) -> RecsvcConnectionError:
    cls = RecsvcTimeoutError if isinstance(exc, httpx.TimeoutException) else RecsvcConnectionError
    what = exc.__class__.__name__
    return cls(f"{call.method} {call.path} failed: {what}: {exc}", request_id=call.request_id)


def decode_base64_vector(data: str) -> list[float]:
    """A base64 string of little-endian float32 values (OpenAI's ``base64`` format) -> floats."""
    raw = base64.b64decode(data)
    if len(raw) % 4:
        raise ValueError(f"base64 embedding of {len(raw)} bytes is not a whole number of float32 values")
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def _items(items: Sequence[ItemInput]) -> list[dict[str, Any]]:
    if isinstance(items, str | bytes):
        raise TypeError("items must be a list (of strings or item dicts), not a single string")
    return [{"text": it} if isinstance(it, str) else dict(it) for it in items]


def _history(history: Sequence[HistoryInput]) -> list[Any]:
    if isinstance(history, str | bytes):
        raise TypeError("history must be a list of item ids (or {'item': {...}} dicts), not a single string")
    return [h if isinstance(h, str) else dict(h) for h in history]


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _parse_embeddings(resp: httpx.Response) -> Embeddings:
    body = resp.json()
    data = sorted(body["data"], key=lambda d: d["index"])
    vectors = [
        decode_base64_vector(d["embedding"]) if isinstance(d["embedding"], str) else d["embedding"] for d in data
    ]
    usage = body.get("usage") or {}
    return Embeddings(
        vectors=vectors,
        model=body["model"],
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        total_tokens=int(usage.get("total_tokens", 0)),
        raw=body,
    )


class _Base:
    def __init__(
        self,
        base_url: str,
        *,
        admin_token: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.retry = retry if retry is not None else RetryPolicy()
        self._admin_token = admin_token
        self._headers = dict(headers or {})

    def __repr__(self) -> str:  # never shows the token
        return f"{self.__class__.__name__}({self.base_url!r})"

    # ------------------------------------------------------------ call specs
    @staticmethod
    def _embed(items: Sequence[ItemInput], return_payload: bool) -> _Call[EmbedResult]:
        body = {"items": _items(items), "return_payload": return_payload}
        return _Call("POST", "/embed", lambda r: EmbedResult.from_json(r.json()), json=body)

    @staticmethod
    def _recommend(
        history: Sequence[HistoryInput],
        k: int,
        mode: Mode,
        filters: Filters | Mapping[str, Any] | None,
        exclude_history: bool,
        profile: Mapping[str, Any] | None,
        user_id: str | None,
    ) -> _Call[RecommendResult]:
        body = _drop_none(
            {
                "history": _history(history),
                "k": k,
                "mode": mode,
                "exclude_history": exclude_history,
                "filters": dict(filters) if filters else None,
                "profile": dict(profile) if profile is not None else None,
                "user_id": user_id,
            }
        )
        return _Call("POST", "/recommend", lambda r: RecommendResult.from_json(r.json()), json=body)

    @staticmethod
    def _search(
        query: str | None, item_id: str | None, k: int, filters: Filters | Mapping[str, Any] | None
    ) -> _Call[SearchResult]:
        if (query is None) == (item_id is None):
            raise ValueError("give exactly one of query (text) or item_id")
        body = _drop_none({"query": query, "item_id": item_id, "k": k, "filters": dict(filters) if filters else None})
        return _Call("POST", "/search", lambda r: SearchResult.from_json(r.json()), json=body)

    @staticmethod
    def _embeddings(input: str | Sequence[str], model: str, encoding_format: str) -> _Call[Embeddings]:
        body = {"input": input if isinstance(input, str) else list(input), "model": model}
        body["encoding_format"] = encoding_format
        return _Call("POST", "/v1/embeddings", _parse_embeddings, json=body)

    @staticmethod
    def _health() -> _Call[Health]:
        return _Call("GET", "/healthz", lambda r: Health(status=r.json()["status"]))

    @staticmethod
    def _ready() -> _Call[Readiness]:
        # 503 is an answer here (not ready, and why), not an error to retry.
        return _Call("GET", "/readyz", lambda r: Readiness.from_json(r.json()), ok=(200, 503))

    @staticmethod
    def _metrics() -> _Call[str]:
        return _Call("GET", "/metrics", lambda r: r.text)

    @staticmethod
    def _start_reindex(catalog_path: str | None) -> _Call[str]:
        body = {"catalog_path": catalog_path} if catalog_path is not None else None
        return _Call(
            "POST",
            "/admin/reindex",
            lambda r: str(r.json()["job_id"]),
            json=body,
            admin=True,
            idempotent=False,
            ok=(202,),
        )

    @staticmethod
    def _get_reindex(job_id: str) -> _Call[ReindexJob]:
        if not job_id or "/" in job_id:
            raise ValueError(f"invalid job id {job_id!r}")
        return _Call("GET", f"/admin/reindex/{job_id}", lambda r: ReindexJob.from_json(r.json()), admin=True)

    # -------------------------------------------------------------- sending
    def _request_headers(self, call: _Call[Any]) -> dict[str, str]:
        headers = {**self._headers, REQUEST_ID_HEADER: call.request_id}
        if call.admin and self._admin_token is not None:
            headers["Authorization"] = f"Bearer {self._admin_token}"
        return headers

    def _after_transport_error(self, call: _Call[Any], attempt: int, exc: httpx.TransportError) -> float | None:
        """Seconds to wait before retrying after a transport error, or None to raise."""
        if attempt >= self.retry.max_retries:
            return None
        # Nothing reached the service when connecting failed; a read failure may have run the call.
        if not call.idempotent and not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return None
        return self.retry.backoff(attempt)

    def _after_status(self, attempt: int, resp: httpx.Response) -> float | None:
        if resp.status_code not in self.retry.statuses or attempt >= self.retry.max_retries:
            return None
        return self.retry.delay(attempt, resp.headers)

    # Both clients' ``_send`` are the same loop around these three (only the I/O differs):
    # request_args -> (response -> _on_response | transport error -> _on_transport_error) ->
    # the answer, a raised error, or a _Retry to sleep out before the next attempt.
    def _request_args(self, call: _Call[Any]) -> dict[str, Any]:
        """Keyword arguments of ``httpx.Client.request`` / ``AsyncClient.request`` for one attempt."""
        return {
            "method": call.method,
            "url": self.base_url + call.path,
            "json": call.json,
            "headers": self._request_headers(call),
            "timeout": self.timeout,
        }

    def _on_response(self, call: _Call[T], attempt: int, resp: httpx.Response) -> T | _Retry:
        if resp.status_code in call.ok:
            return call.parse(resp)
        delay = self._after_status(attempt, resp)
        if delay is None:
            raise _status_error(resp, call.request_id)
        return self._retry_in(attempt, delay, f"HTTP {resp.status_code}")

    def _on_transport_error(self, call: _Call[Any], attempt: int, exc: httpx.TransportError) -> _Retry:
        delay = self._after_transport_error(call, attempt, exc)
        if delay is None:
            raise _transport_error(exc, call) from exc
        return self._retry_in(attempt, delay, exc.__class__.__name__)

    def _retry_in(self, attempt: int, delay: float, reason: str) -> _Retry:
        if self.retry.on_retry is not None:
            self.retry.on_retry(attempt, delay, reason)
        return _Retry(delay)


class RecsvcClient(_Base):
    """Synchronous client. ``timeout``: seconds (or an ``httpx.Timeout``) per request attempt;
    ``retry``: a :class:`RetryPolicy`; ``admin_token``: bearer token of the ``/admin`` routes;
    ``http_client``: an ``httpx.Client`` of your own (proxies, TLS, transports), not closed by us."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        admin_token: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, admin_token=admin_token, timeout=timeout, retry=retry, headers=headers)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(timeout=self.timeout)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> RecsvcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: _Call[T]) -> T:
        for attempt in itertools.count():
            try:
                outcome = self._on_response(call, attempt, self._http.request(**self._request_args(call)))
            except httpx.TransportError as exc:
                outcome = self._on_transport_error(call, attempt, exc)
            if not isinstance(outcome, _Retry):
                return outcome
            time.sleep(outcome.delay)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------- endpoints
    def embed(self, items: Sequence[ItemInput], *, return_payload: bool = False) -> EmbedResult:
        """``POST /embed``: items (a string is ``{"text": ...}``; a dict has ``title``, ``brand``, ...) -> vectors."""
        return self._send(self._embed(items, return_payload))

    def recommend(
        self,
        history: Sequence[HistoryInput],
        *,
        k: int = 10,
        mode: Mode = "dense",
        filters: Filters | Mapping[str, Any] | None = None,
        exclude_history: bool = True,
        profile: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> RecommendResult:
        """``POST /recommend``: history (item ids, oldest first, or ``{"item": {...}}`` for new items) -> items."""
        return self._send(self._recommend(history, k, mode, filters, exclude_history, profile, user_id))

    def search(
        self,
        query: str | None = None,
        *,
        item_id: str | None = None,
        k: int = 10,
        filters: Filters | Mapping[str, Any] | None = None,
    ) -> SearchResult:
        """``POST /search``: a text query, or ``item_id=`` for items like that one -> items."""
        return self._send(self._search(query, item_id, k, filters))

    def embeddings(
        self, input: str | Sequence[str], *, model: str = "recsvc", encoding_format: str = "float"
    ) -> Embeddings:
        """``POST /v1/embeddings`` (OpenAI-compatible); base64 answers are decoded."""
        return self._send(self._embeddings(input, model, encoding_format))

    def health(self) -> Health:
        return self._send(self._health())

    def ready(self) -> Readiness:
        """``GET /readyz``: answered (``ready`` False) rather than raised while not ready."""
        return self._send(self._ready())

    def metrics(self) -> str:
        """``GET /metrics``: the Prometheus text exposition."""
        return self._send(self._metrics())

    def start_reindex(self, catalog_path: str | None = None) -> str:
        """``POST /admin/reindex`` (admin token): start a reindex; returns its job id."""
        return self._send(self._start_reindex(catalog_path))

    def get_reindex(self, job_id: str) -> ReindexJob:
        """``GET /admin/reindex/{job_id}`` (admin token)."""
        return self._send(self._get_reindex(job_id))

    def wait_reindex(self, job_id: str, *, timeout: float = 600.0, poll_s: float = 0.5) -> ReindexJob:
        """Poll a reindex job until it succeeded or failed (returned either way; check ``status``)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get_reindex(job_id)
            if job.done:
                return job
            if time.monotonic() > deadline:
                raise RecsvcTimeoutError(f"reindex job {job_id} still {job.status} ({job.stage}) after {timeout} s")
            time.sleep(poll_s)


class AsyncRecsvcClient(_Base):
    """asyncio client with the same methods as :class:`RecsvcClient` (awaitable)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        admin_token: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, admin_token=admin_token, timeout=timeout, retry=retry, headers=headers)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient(timeout=self.timeout)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncRecsvcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, call: _Call[T]) -> T:
        for attempt in itertools.count():
            try:
                outcome = self._on_response(call, attempt, await self._http.request(**self._request_args(call)))
            except httpx.TransportError as exc:
                outcome = self._on_transport_error(call, attempt, exc)
            if not isinstance(outcome, _Retry):
                return outcome
            await asyncio.sleep(outcome.delay)
        raise AssertionError("unreachable")

    async def embed(self, items: Sequence[ItemInput], *, return_payload: bool = False) -> EmbedResult:
        return await self._send(self._embed(items, return_payload))

    async def recommend(
        self,
        history: Sequence[HistoryInput],
        *,
        k: int = 10,
        mode: Mode = "dense",
        filters: Filters | Mapping[str, Any] | None = None,
        exclude_history: bool = True,
        profile: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> RecommendResult:
        return await self._send(self._recommend(history, k, mode, filters, exclude_history, profile, user_id))

    async def search(
        self,
        query: str | None = None,
        *,
        item_id: str | None = None,
        k: int = 10,
        filters: Filters | Mapping[str, Any] | None = None,
    ) -> SearchResult:
        return await self._send(self._search(query, item_id, k, filters))

    async def embeddings(
        self, input: str | Sequence[str], *, model: str = "recsvc", encoding_format: str = "float"
    ) -> Embeddings:
        return await self._send(self._embeddings(input, model, encoding_format))

    async def health(self) -> Health:
        return await self._send(self._health())

    async def ready(self) -> Readiness:
        return await self._send(self._ready())

    async def metrics(self) -> str:
        return await self._send(self._metrics())

    async def start_reindex(self, catalog_path: str | None = None) -> str:
        return await self._send(self._start_reindex(catalog_path))

    async def get_reindex(self, job_id: str) -> ReindexJob:
        return await self._send(self._get_reindex(job_id))

    async def wait_reindex(self, job_id: str, *, timeout: float = 600.0, poll_s: float = 0.5) -> ReindexJob:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.get_reindex(job_id)
            if job.done:
                return job
            if time.monotonic() > deadline:
                raise RecsvcTimeoutError(f"reindex job {job_id} still {job.status} ({job.stage}) after {timeout} s")
            await asyncio.sleep(poll_s)
