"""POST /recommend: history -> ranked items."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import StateDep
from service.schemas import RecommendedItem, RecommendRequest, RecommendResponse, check_recommend_limits

router = APIRouter(tags=["recommend"])


@router.post("/recommend", response_model=RecommendResponse, summary="Recommend items for a history")
async def recommend(req: RecommendRequest, state: StateDep) -> RecommendResponse:
    check_recommend_limits(req, state.settings.limits)
    result = await state.recommender.recommend(req)
    return RecommendResponse(
        items=[RecommendedItem(item_id=i.item_id, score=i.score, rank=i.rank, payload=i.payload) for i in result.items],
        mode=result.mode,
        index_version=result.index_version,
        model_version=result.model_version,
        cached=result.cached,
        profile_source=result.profile_source,  # type: ignore[arg-type]  # one of ProfileSource
        ranking=result.ranking,  # type: ignore[arg-type]  # one of Ranking
    )
