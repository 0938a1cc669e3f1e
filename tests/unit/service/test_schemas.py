"""Request models: the two item forms, history entries, filters, configured limits."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.config import LimitSettings
from service.core.items import Item, item_text
from service.errors import LimitExceededError
from service.recommender.filters import build_filter
from service.schemas import (
    EmbedRequest,
    Filters,
    ItemRef,
    ItemText,
    NewItem,
    RecommendRequest,
    check_embed_limits,
    check_recommend_limits,
)


def test_item_text_forms() -> None:
    raw = ItemText(text="  plain words ")
    assert raw.encoder_text() == "plain words" and raw.to_item().title == "plain words"
    structured = ItemText(title="Serum", brand="Acme", categories=["Skin", " "], attributes={"size": "30 ml"})
    item = structured.to_item()
    assert item == Item(item_id="", title="Serum", brand="Acme", categories=("Skin",), attributes={"size": "30 ml"})
    assert structured.encoder_text() == item_text(item)
    for bad in ({}, {"text": "a", "title": "b"}, {"text": "a", "brand": "b"}, {"brand": "only"}, {"title": "  "}):
        with pytest.raises(ValidationError):
            ItemText.model_validate(bad)


def test_history_entries_normalise_to_refs_and_new_items() -> None:
    req = RecommendRequest.model_validate({"history": ["a", {"item_id": "b"}, {"item": {"text": "c"}}]})
    entries = req.history_entries()
    assert entries[0] == ItemRef(item_id="a") and entries[1] == ItemRef(item_id="b")
    assert isinstance(entries[2], NewItem) and entries[2].item.text == "c"
    assert req.k == 10 and req.exclude_history and req.mode == "dense" and req.filters is None


def test_filters_validation_and_translation() -> None:
    with pytest.raises(ValidationError, match="price_min"):
        Filters(price_min=5, price_max=1)
    with pytest.raises(ValidationError):
        Filters.model_validate({"price_max": float("nan")})
    f = build_filter(Filters(categories=["Hair", "Hair", " "], price_min=1), ["x", "y", "x"])
    assert f.categories == ("Hair",) and f.price_min == 1 and f.price_max is None
    assert f.exclude_ids == ("x", "y")
    q = f.to_qdrant()
    assert q is not None and q.must is not None and q.must_not is not None
    assert build_filter(None).to_qdrant() is None


def test_configured_limits() -> None:
    limits = LimitSettings(max_embed_items=2, max_text_chars=5, max_history=3, max_k=4)
    check_embed_limits(EmbedRequest.model_validate({"items": [{"text": "12345"}] * 2}), limits)
    with pytest.raises(LimitExceededError) as info:
        check_embed_limits(EmbedRequest.model_validate({"items": [{"text": "a"}] * 3}), limits)
    assert info.value.details == {"field": "items", "limit": 2, "actual": 3}
    with pytest.raises(LimitExceededError):
        check_embed_limits(
            EmbedRequest.model_validate({"items": [{"title": "a", "attributes": {"k": "123456"}}]}), limits
        )
    check_recommend_limits(RecommendRequest.model_validate({"history": ["a"] * 3, "k": 4}), limits)
    for bad in ({"history": ["a"] * 4}, {"history": ["a"], "k": 5}, {"history": [{"item": {"text": "123456"}}]}):
        with pytest.raises(LimitExceededError):
            check_recommend_limits(RecommendRequest.model_validate(bad), limits)
