"""OpenAI-compatible embeddings: ``POST /v1/embeddings`` and ``GET /v1/models``.

What the ``openai`` client, LangChain's ``OpenAIEmbeddings`` and LlamaIndex send (the
shape infinity, TEI and vLLM serve): ``input`` (a string or a list of strings),
``model``, ``encoding_format`` (``float``, or ``base64``: each vector's little-endian
float32 bytes), optional ``dimensions`` and ``user``. The texts go through the same
encoder path as ``POST /embed`` (``AppState.embed``: the dynamic batcher and whatever
admission control it applies) under the same configured limits, raw text as
``{"text": ...}`` items of ``/embed`` take it, so both routes give the same vectors.

Errors on these routes only use OpenAI's error shape,
``{"error": {"message", "type", "param", "code"}}``, with the service's HTTP status and
headers (``Retry-After`` on 503/429), so OpenAI clients raise their usual exceptions
and retry what they retry; every other route keeps the service's one error shape.
``usage`` counts the tokens the encoder saw (after truncation to its ``max_length``,
special tokens included).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.deps import StateDep
from service.errors import LimitExceededError, ServiceError, _http_code, validation_details
from service.state import AppState

logger = logging.getLogger(__name__)

# Model ids accepted besides the served ``encoder@version`` and the bare encoder name.
MODEL_ALIASES = ("recsvc",)


def openai_error_type(status: int) -> str:
    """OpenAI's ``error.type`` for an HTTP status."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def openai_error_body(message: str, status: int, *, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": openai_error_type(status), "param": param, "code": code}}


class OpenAIError(Exception):
    """An error answered in OpenAI's shape (raised only by the routes of this module)."""

    def __init__(self, status: int, message: str, *, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


def _response(status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def _limit_param(exc: LimitExceededError) -> str:
    field = exc.details.get("field") if isinstance(exc.details, dict) else None
    return "input" if field in ("items", "text length") else str(field or "input")


class OpenAIRoute(APIRoute):
    """Routes whose every error (validation, domain, HTTP, unexpected) is answered in OpenAI's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except OpenAIError as exc:
                return _response(exc.status, openai_error_body(exc.message, exc.status, code=exc.code, param=exc.param))
            except RequestValidationError as exc:
                details = validation_details(exc)
                first = details[0] if details else {"loc": [], "msg": "invalid request"}
                if first.get("type") == "json_invalid":
                    message, param = f"the request body is not valid JSON: {first['msg']}", None
                else:
                    loc = [p for p in first["loc"] if p != "body"]
                    where = ".".join(str(p) for p in loc) or "body"
                    message = f"invalid request: {where}: {first['msg']}"
                    param = loc[0] if loc and isinstance(loc[0], str) else None
                return _response(400, openai_error_body(message, 400, code="invalid_request", param=param))
            except LimitExceededError as exc:
                body = openai_error_body(exc.message, exc.status_code, code=exc.code, param=_limit_param(exc))
                return _response(exc.status_code, body, exc.headers)
            except ServiceError as exc:
                body = openai_error_body(exc.message, exc.status_code, code=exc.code)
                return _response(exc.status_code, body, exc.headers)
            except StarletteHTTPException as exc:
                message = exc.detail if isinstance(exc.detail, str) else "request failed"
                body = openai_error_body(message, exc.status_code, code=_http_code(exc.status_code))
                return _response(exc.status_code, body, exc.headers)
            except Exception as exc:
                logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
                return _response(500, openai_error_body("internal server error", 500, code="internal_error"))

        return handler


class OpenAIErrorInfo(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, not_found_error, rate_limit_error or server_error.")
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    """OpenAI's error body, which every error of the /v1 routes uses (OpenAI clients parse it)."""

    error: OpenAIErrorInfo


def _openai_error_docs() -> dict[int | str, dict[str, Any]]:
    docs: dict[int | str, dict[str, Any]] = {
        status: {"model": OpenAIErrorResponse, "description": f"{text} (OpenAI error shape)."}
        for status, text in (
            (400, "Invalid request body"),
            (404, "Unknown model"),
            (415, "Body not sent as JSON"),
            (422, "Invalid request"),
            (500, "Internal error"),
            (503, "Not ready or overloaded; Retry-After says when to retry"),
        )
    }
    # Over the configured limits: OpenAI's shape. A body over the byte limit is refused before routing,
    # in the service's own shape.
    # Past the request's deadline: the route answers in OpenAI's shape, the deadline middleware (when the
    # route does not end in time) in the service's.
    docs[504] = {
        "description": "The request's deadline passed (OpenAI error shape, or ErrorResponse from the middleware).",
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/OpenAIErrorResponse"},
                        {"$ref": "#/components/schemas/ErrorResponse"},
                    ]
                }
            }
        },
    }
    docs[413] = {
        "description": "Over a configured limit (OpenAI error shape), or body over the byte limit (ErrorResponse).",
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/OpenAIErrorResponse"},
                        {"$ref": "#/components/schemas/ErrorResponse"},
                    ]
                }
            }
        },
    }
    return docs


router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute, responses=_openai_error_docs())

# Lengths are checked against the configured limits after parsing (413 limit_exceeded, as on /embed).
TextInput = str


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"input": ["gentle shampoo for curly hair", "bold red nail polish"], "model": "recsvc"},
                {"input": "vitamin C brightening cream", "model": "recsvc", "encoding_format": "base64"},
            ]
        },
    )

    input: TextInput | list[TextInput] | list[int] | list[list[int]] = Field(
        description="A text or a list of texts (token arrays are not accepted: this encoder has its own tokenizer)."
    )
    model: str = Field(min_length=1, max_length=512, description="The served model id (GET /v1/models) or 'recsvc'.")
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="float: lists of numbers; base64: each vector's little-endian float32 bytes."
    )
    dimensions: int | None = Field(
        default=None, ge=1, description="Only the model's own dimension is served (vectors are not truncated)."
    )
    user: str | None = Field(default=None, max_length=512, description="Accepted and ignored.")


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "recsvc"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def served_model_ids(state: AppState) -> list[str]:
    """Model ids this worker answers to: ``encoder@version`` first (what responses name)."""
    return list(dict.fromkeys([state.model_name, state.encoder.name, *MODEL_ALIASES]))


def _texts(value: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    if isinstance(value, str):
        texts = [value]
    else:
        if any(not isinstance(v, str) for v in value):
            raise OpenAIError(
                400,
                "token arrays are not supported: send the text (a string or a list of strings); this model "
                "tokenizes with its own tokenizer (with LangChain's OpenAIEmbeddings set "
                "check_embedding_ctx_length=False)",
                code="unsupported_input",
                param="input",
            )
        texts = [v for v in value if isinstance(v, str)]
    if not texts:
        raise OpenAIError(400, "input is an empty list: give at least one text", code="invalid_request", param="input")
    for i, t in enumerate(texts):
        if not t.strip():
            where = "input" if isinstance(value, str) else f"input[{i}]"
            raise OpenAIError(400, f"{where} is blank: every text needs content", code="invalid_request", param="input")
    return [t.strip() for t in texts]


def count_tokens(encoder: object, texts: Sequence[str]) -> int:
    """Tokens the encoder sees for ``texts``: the ONNX encoder's tokenizer (truncated, special tokens
    included), else an encoder's own ``tokens`` (the test double's words, at least 1 per text),
    else whitespace words."""
    tokenizer = getattr(encoder, "tokenizer", None)
    if tokenizer is not None and callable(getattr(tokenizer, "encode", None)):
        return int(sum(len(ids) for ids in tokenizer.encode(list(texts))))
    tokens = getattr(encoder, "tokens", None)
    if callable(tokens):
        return int(sum(max(1, len(tokens(t))) for t in texts))
    return sum(max(1, len(t.split())) for t in texts)


def encode_base64(vector: np.ndarray) -> str:
    """One vector as base64 of its little-endian float32 bytes (what OpenAI's base64 format holds)."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


@router.post(
    "/embeddings",
    response_model=EmbeddingsResponse,
    summary="OpenAI-compatible embeddings (same encoder path and limits as /embed)",
)
async def embeddings(req: EmbeddingsRequest, state: StateDep) -> EmbeddingsResponse:
    ids = served_model_ids(state)
    if req.model not in ids:
        raise OpenAIError(
            404,
            f"model {req.model!r} is not served here; use one of: {', '.join(ids)}",
            code="model_not_found",
            param="model",
        )
    dim = int(state.encoder.dim)
    if req.dimensions is not None and req.dimensions != dim:
        raise OpenAIError(
            400,
            f"dimensions={req.dimensions} is not supported: this model returns {dim}-dimensional vectors only "
            "(omit 'dimensions' or set it to the model's dimension)",
            code="unsupported_dimensions",
            param="dimensions",
        )
    texts = _texts(req.input)
    limits = state.settings.limits
    if len(texts) > limits.max_embed_items:
        raise LimitExceededError("items", limits.max_embed_items, len(texts))
    for t in texts:
        if len(t) > limits.max_text_chars:
            raise LimitExceededError("text length", limits.max_text_chars, len(t))

    vectors, tokens = await asyncio.gather(
        state.embed(texts),  # [N, dim]
        asyncio.to_thread(count_tokens, state.encoder, texts),
    )
    data = [
        EmbeddingData(index=i, embedding=encode_base64(v) if req.encoding_format == "base64" else v.tolist())
        for i, v in enumerate(np.asarray(vectors, dtype=np.float32))
    ]
    return EmbeddingsResponse(data=data, model=state.model_name, usage=Usage(prompt_tokens=tokens, total_tokens=tokens))


@router.get("/models", response_model=ModelList, summary="Models served by /v1/embeddings (OpenAI-compatible)")
async def models(state: StateDep) -> ModelList:
    return ModelList(data=[ModelCard(id=m) for m in served_model_ids(state)])
