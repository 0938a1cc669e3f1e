"""Request filters -> the index's :class:`SearchFilter` (applied inside the search, before ranking)."""

from __future__ import annotations

from collections.abc import Iterable

from service.core.index import SearchFilter
from service.schemas import Filters


def build_filter(filters: Filters | None, exclude_ids: Iterable[str] = ()) -> SearchFilter:
    """Categories match any, price range inclusive, ``exclude_ids`` never returned."""
    excluded = tuple(dict.fromkeys(exclude_ids))
    if filters is None:
        return SearchFilter(exclude_ids=excluded)
    categories = tuple(dict.fromkeys(c.strip() for c in filters.categories if c.strip()))
    return SearchFilter(
        categories=categories,
        price_min=filters.price_min,
        price_max=filters.price_max,
        exclude_ids=excluded,
    )
