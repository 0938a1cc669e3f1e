"""Probes and metrics: /healthz (process alive), /readyz (models + Qdrant alias), /metrics."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.metrics import Metrics
from service.schemas import ReadyResponse
from service.state import AppState

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

READY_TIMEOUT_S = 2.0


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    summary="Readiness: models loaded and the Qdrant alias reachable",
    responses={503: {"model": ReadyResponse}},
)
async def readyz(request: Request) -> JSONResponse:
    state: AppState | None = getattr(request.app.state, "recsvc", None)
    checks = {"models": False, "qdrant": False}
    detail = None
    index_version = model_version = None
    if state is not None and state.ready:
        checks["models"] = True
        model_version = state.model_version
        try:
            target = await asyncio.wait_for(state.store.alias_target(), READY_TIMEOUT_S)
            checks["qdrant"] = target is not None
            index_version = state.store.snapshot.collection if state.store.has_snapshot else None
            if target is None:
                detail = f"alias {state.store.index.alias!r} does not exist"
        except Exception as exc:
            detail = f"qdrant unreachable: {exc.__class__.__name__}"
        if state.redis is not None:
            try:
                checks["redis"] = bool(await asyncio.wait_for(state.redis.ping(), READY_TIMEOUT_S))
            except Exception as exc:
                checks["redis"] = False
                detail = detail or f"redis unreachable: {exc.__class__.__name__}"
    else:
        detail = "starting or stopping"
    ok = all(checks.values())
    body = ReadyResponse(
        status="ready" if ok else "not_ready",
        checks=checks,
        index_version=index_version,
        model_version=model_version,
        detail=detail,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
