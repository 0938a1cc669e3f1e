"""POST /recommend: history -> ranked items.

Deadlines and client disconnects are enforced around the route by
``RequestDeadlineMiddleware``; text history items go through the encoder's
interactive lane (ahead of bulk /embed work). The ranked list is serialised once by
orjson (``responses.py``); the OpenAPI schema stays ``RecommendResponse``. Answered requests are
timed per mode (``recsvc_recommend_latency_seconds{mode}``; the request histogram has no mode).
"""

from __future__ import annotations

import time

from fastapi import APIRouter

from service.api.responses import FastJSONResponse
from service.deps import StateDep
from service.schemas import RecommendRequest, RecommendResponse, check_recommend_limits

router = APIRouter(tags=["recommend"])


@router.post(
    "/recommend",
    response_model=RecommendResponse,
    response_class=FastJSONResponse,
    summary="Recommend items for a history",
)
async def recommend(req: RecommendRequest, state: StateDep) -> FastJSONResponse:
    t0 = time.perf_counter()
    check_recommend_limits(req, state.settings.limits)
    result = await state.recommender.recommend(req)
    body = {
        "items": [
            {"item_id": i.item_id, "score": float(i.score), "rank": i.rank, "payload": i.payload} for i in result.items
        ],
        "mode": result.mode,
        "index_version": result.index_version,
        "model_version": result.model_version,
        "cached": result.cached,
        "profile_source": result.profile_source,
        "ranking": result.ranking,
    }
    response = FastJSONResponse(body)
    state.metrics.on_recommend(req.mode, time.perf_counter() - t0)
    return response
