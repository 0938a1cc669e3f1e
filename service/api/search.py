"""POST /search: a query text or a catalog item -> the top-k catalog items by text similarity.

The query text goes through the same encoder path as ``/embed`` (``AppState.embed``); an item
id takes that item's text vector from the served snapshot and is never returned itself. The
search runs on the ``text`` vectors (cosine) of the live collection, the one ``/recommend``
serves (so items a reindex added are found as soon as the alias moved), with the same
filters as ``/recommend`` applied inside the search.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from service.core.index import ROW_KEY, VECTOR_TEXT
from service.deps import StateDep
from service.errors import LimitExceededError, UnknownItemError
from service.recommender.filters import build_filter
from service.schemas import Filters, RecommendedItem

router = APIRouter(tags=["search"])


class SearchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"query": "gentle shampoo for curly hair", "k": 5, "filters": {"price_max": 30}},
                {"item_id": "D000012", "k": 10, "filters": {"categories": ["Skin Care"]}},
            ]
        },
    )

    query: str | None = Field(
        default=None,
        min_length=1,
        description="Text to search for (raw, as the encoder sees it; at most limits.max_text_chars, else 413).",
    )
    item_id: str | None = Field(
        default=None, min_length=1, max_length=512, description="Find items like this catalog item (never returned)."
    )
    k: StrictInt = Field(default=10, ge=1, description="How many items to return (at most limits.max_k, else 413).")
    filters: Filters | None = Field(default=None, description="The same filters as /recommend.")

    @model_validator(mode="after")
    def _one_query(self) -> SearchRequest:
        if (self.query is None) == (self.item_id is None):
            raise ValueError("give exactly one of 'query' (text) or 'item_id'")
        if self.query is not None and not self.query.strip():
            raise ValueError("'query' is blank")
        return self


class SearchResponse(BaseModel):
    items: list[RecommendedItem] = Field(description="Most similar first; score = cosine similarity of text vectors.")
    index_version: str = Field(description="Qdrant collection the results came from.")
    model_version: str = Field(description="Artifact set version of the encoder.")


@router.post("/search", response_model=SearchResponse, summary="Search the catalog by text or by a similar item")
async def search(req: SearchRequest, state: StateDep) -> SearchResponse:
    limits = state.settings.limits
    if req.k > limits.max_k:
        raise LimitExceededError("k", limits.max_k, req.k)
    snapshot = state.store.snapshot  # one consistent view for the whole request
    exclude: list[str] = []
    if req.item_id is not None:
        row = snapshot.row_of.get(req.item_id)
        if row is None:
            raise UnknownItemError([req.item_id])
        vector = snapshot.text_vectors[row]  # [T]
        exclude.append(req.item_id)
    else:
        assert req.query is not None
        text = req.query.strip()
        if len(text) > limits.max_text_chars:
            raise LimitExceededError("text length", limits.max_text_chars, len(text))
        vector = (await state.embed([text]))[0]  # [T]
    vector = np.asarray(vector, dtype=np.float32)
    hits = await state.store.search(VECTOR_TEXT, vector, req.k, build_filter(req.filters, exclude), snapshot)
    items = [
        RecommendedItem(item_id=h.item_id, score=h.score, rank=rank, payload=_public(h.payload))
        for rank, h in enumerate(hits, start=1)
    ]
    return SearchResponse(items=items, index_version=snapshot.collection, model_version=state.model_version)


def _public(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != ROW_KEY}
