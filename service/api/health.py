"""Probes and metrics: /healthz (process alive), /readyz (can serve: models + Qdrant alias; Redis only
degrades), /metrics."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.metrics import Metrics
from service.schemas import ReadyResponse
from service.state import AppState
from service.workers import METRICS_SCOPE_HEADER, METRICS_SCOPE_PROCESS, ProcessRole, gather_metrics

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

READY_TIMEOUT_S = 2.0


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    summary="Readiness: the service can answer /recommend and /embed (models loaded, Qdrant alias reachable)",
    description=(
        'Redis is an optional accelerator: when it is down the answer stays 200 with `degraded: ["redis"]` '
        '(and the gauge `recsvc_degraded{component="redis"}` is 1); only what /recommend and /embed need '
        "fails readiness."
    ),
    responses={503: {"model": ReadyResponse}},
)
async def readyz(request: Request) -> JSONResponse:
    state: AppState | None = getattr(request.app.state, "recsvc", None)
    checks = {"models": False, "qdrant": False}
    degraded: list[str] = []
    detail = None
    index_version = model_version = None
    if state is not None and state.ready:
        checks["models"] = True
        model_version = state.model_version
        try:
            target = await asyncio.wait_for(state.store.alias_target(), READY_TIMEOUT_S)
            index_version = state.store.snapshot.collection if state.store.has_snapshot else None
            checks["qdrant"] = target is not None
            if target is None:
                detail = f"alias {state.store.index.alias!r} does not exist"
        except Exception as exc:
            detail = f"qdrant unreachable: {exc.__class__.__name__}"
        if state.redis is not None:
            up = await _redis_up(state)
            checks["redis"] = up
            if not up:
                degraded.append("redis")
    else:
        detail = "starting or stopping"
    ok = checks["models"] and checks["qdrant"]
    if ok and degraded:
        detail = "degraded: " + ", ".join(degraded) + " unreachable (serving without it)"
    body = ReadyResponse(
        status="ready" if ok else "not_ready",
        checks=checks,
        degraded=degraded,
        index_version=index_version,
        model_version=model_version,
        detail=detail,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


async def _redis_up(state: AppState) -> bool:
    """One bounded ping; the outcome also updates the health flag (and with it the gauge)."""
    assert state.redis is not None
    try:
        up = bool(await asyncio.wait_for(state.redis.ping(), READY_TIMEOUT_S))
    except Exception as exc:
        if state.redis_health is not None:
            state.redis_health.mark_down(exc)
        return False
    if state.redis_health is not None:
        state.redis_health.mark_up()
    return up


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """With several processes on one node (embedded multi-process mode) the answer holds every process's
    metrics, labelled ``worker``."""
    metrics: Metrics = request.app.state.metrics
    own = generate_latest(metrics.registry)
    role: ProcessRole | None = getattr(request.app.state, "role", None)
    if role is None or role.workers < 2 or request.headers.get(METRICS_SCOPE_HEADER) == METRICS_SCOPE_PROCESS:
        return Response(own, media_type=CONTENT_TYPE_LATEST)
    return Response(await gather_metrics(role, own), media_type=CONTENT_TYPE_LATEST)
