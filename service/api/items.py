"""Items API (admin token): ``PUT /admin/items`` upserts a batch, ``DELETE /admin/items`` removes one.

The whole batch is validated first (per-item errors, nothing applied on a rejected batch); an
acknowledged (200) change is in the fsynced item log, in the served snapshot and in the
collection behind the alias (see service.stores.item_log).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter

from service.core.items import Item, item_from_dict, item_text
from service.deps import AdminDep, StateDep
from service.errors import InvalidRequestError, LimitExceededError, NotReadyError
from service.schemas import ItemsChangeOut, ItemsDeleteRequest, ItemsUpsertRequest
from service.stores.item_log import ItemCatalog

router = APIRouter(prefix="/admin", tags=["items"], dependencies=[AdminDep])

_FIELD = re.compile(r"'(\w+)'")
_422: dict[int | str, dict[str, Any]] = {
    422: {
        "description": "invalid_request: the batch was rejected as a whole (nothing applied); `details` lists "
        "`{index, item_id, field, message}` per bad item"
    }
}


def _check_batch_size(state: Any, n: int) -> None:
    limit = state.settings.items.max_batch
    if n > limit:
        raise LimitExceededError("items per batch", limit, n)


async def _apply(
    state: Any,
    errors: list[dict[str, Any]],
    rejected: str,
    change: Callable[[ItemCatalog], Awaitable[dict[str, int]]],
) -> ItemsChangeOut:
    """The framing both routes share: a batch with any error is rejected whole (422 ``rejected``,
    nothing applied), else ``change`` runs on the item catalog and its counts are the answer."""
    if errors:
        raise InvalidRequestError(f"{rejected}; nothing was applied", errors)
    if state.items is None:
        raise NotReadyError("the items API is not ready")
    counts = await change(state.items)
    return ItemsChangeOut(**counts, index_version=state.store.snapshot.collection)


def validate_items(rows: list[dict[str, Any]], max_text_chars: int) -> tuple[list[Item], list[dict[str, Any]]]:
    """Every row checked; -> (items, errors as {index, item_id, field, message})."""
    items: list[Item] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        raw_id = row.get("item_id") if isinstance(row, dict) else None
        iid = str(raw_id) if isinstance(raw_id, str | int) else None
        try:
            item = item_from_dict(row)
        except ValueError as exc:
            m = _FIELD.search(str(exc))
            errors.append({"index": i, "item_id": iid, "field": m.group(1) if m else None, "message": str(exc)})
            continue
        if len(item.item_id) > 512:
            errors.append({"index": i, "item_id": iid, "field": "item_id", "message": "'item_id' is over 512 chars"})
            continue
        if item.price is not None and not math.isfinite(item.price):  # NaN/Infinity: no filter can use it
            errors.append({"index": i, "item_id": iid, "field": "price", "message": "'price' must be a finite number"})
            continue
        if len(item_text(item)) > max_text_chars:
            errors.append(
                {
                    "index": i,
                    "item_id": iid,
                    "field": None,
                    "message": f"item text is over limits.max_text_chars ({max_text_chars}) characters",
                }
            )
            continue
        if item.item_id in seen:
            errors.append(
                {
                    "index": i,
                    "item_id": iid,
                    "field": "item_id",
                    "message": f"duplicate item_id (also at index {seen[item.item_id]})",
                }
            )
            continue
        seen[item.item_id] = i
        items.append(item)
    return items, errors


@router.put(
    "/items",
    response_model=ItemsChangeOut,
    summary="Create or replace items by item_id (durable and live on the 200)",
    description=(
        "Each item has the fields of an `items.jsonl` line. The whole batch is validated first; any bad item "
        "rejects the batch (422, nothing applied). On the 200 the items are in the fsynced item log (they "
        "survive kill -9, restarts and reindexes), in the served catalog (history by id, candidates, filters, "
        "/search) and in the collection behind the alias. Repeating a request changes nothing (`unchanged`)."
    ),
    responses=_422,
)
async def upsert_items(req: ItemsUpsertRequest, state: StateDep) -> ItemsChangeOut:
    _check_batch_size(state, len(req.items))
    items, errors = validate_items(req.items, state.settings.limits.max_text_chars)
    return await _apply(
        state, errors, f"{len(errors)} of {len(req.items)} items are invalid", lambda cat: cat.upsert(items)
    )


@router.delete(
    "/items",
    response_model=ItemsChangeOut,
    summary="Remove items by id (durable: a later reindex does not bring them back)",
    description=(
        "Ids not served count as `unchanged` (their removal is still logged, so a reindex from a catalog file "
        "that holds them leaves them out). A batch that would empty the catalog is refused (422)."
    ),
    responses=_422,
)
async def delete_items(req: ItemsDeleteRequest, state: StateDep) -> ItemsChangeOut:
    _check_batch_size(state, len(req.ids))
    errors = [
        {"index": i, "item_id": iid, "field": "ids", "message": "empty or over 512 chars"}
        for i, iid in enumerate(req.ids)
        if not iid.strip() or len(iid) > 512
    ]
    dup = [iid for iid, n in Counter(req.ids).items() if n > 1]  # (not list.count per id: O(n^2))
    if dup:
        errors.append({"index": None, "item_id": min(dup), "field": "ids", "message": "duplicate ids"})
    return await _apply(state, errors, f"{len(errors)} invalid ids", lambda cat: cat.delete(req.ids))
