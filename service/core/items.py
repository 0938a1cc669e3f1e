"""Item records and the one function that turns an item into encoder text.

Training and serving both call :func:`item_text`, so a vector computed offline
for an item is the vector the service would compute for the same item online.
No web or ML dependencies live here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Fields the shared dataset layout names explicitly (../shared/data/README.md).
KNOWN_FIELDS = (
    "item_id",
    "title",
    "description",
    "brand",
    "categories",
    "features",
    "price",
    "year",
    "genres",
)


@dataclass(frozen=True)
class Item:
    """One catalog item. Only ``item_id`` and ``title`` are required."""

    item_id: str
    title: str
    description: str = ""
    brand: str = ""
    categories: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    price: float | None = None
    year: int | None = None
    genres: tuple[str, ...] = ()
    # Any other structured attributes (e.g. {"color": "red"}), kept in order.
    attributes: Mapping[str, str] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """JSON-friendly dict of every field (used as the Qdrant payload)."""
        out: dict[str, Any] = {
            "item_id": self.item_id,
            "title": self.title,
            "description": self.description,
            "brand": self.brand,
            "categories": list(self.categories),
            "features": list(self.features),
            "genres": list(self.genres),
        }
        if self.price is not None:
            out["price"] = self.price
        if self.year is not None:
            out["year"] = self.year
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        return out


def _str_tuple(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value.strip() else ()
    if isinstance(value, list | tuple):
        out = []
        for v in value:
            if not isinstance(v, str | int | float):
                raise ValueError(f"field {name!r} must be a list of strings")
            s = str(v).strip()
            if s:
                out.append(s)
        return tuple(out)
    raise ValueError(f"field {name!r} must be a string or a list of strings")


def item_from_dict(row: Mapping[str, Any], *, allow_empty_title: bool = False) -> Item:
    """Build an :class:`Item` from one JSON object of ``items.jsonl``.

    Raises ``ValueError`` with a message naming the offending field. An empty
    title is an error unless ``allow_empty_title`` (real catalogs have a few;
    such an item is then known by its other fields, or by its id alone).
    """
    if not isinstance(row, Mapping):
        raise ValueError("item must be a JSON object")
    raw_id = row.get("item_id")
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        raise ValueError("missing or empty 'item_id'")
    if not isinstance(raw_id, str | int):
        raise ValueError("'item_id' must be a string")
    title = row.get("title")
    if title is None and allow_empty_title:
        title = ""
    if not isinstance(title, str):
        raise ValueError(f"item {raw_id!s}: 'title' must be a string")
    if not title.strip() and not allow_empty_title:
        raise ValueError(f"item {raw_id!s}: missing or empty 'title' (allow with --allow-empty-titles)")
    description = row.get("description") or ""
    if not isinstance(description, str):
        raise ValueError(f"item {raw_id!s}: 'description' must be a string")
    brand = row.get("brand") or ""
    if not isinstance(brand, str):
        raise ValueError(f"item {raw_id!s}: 'brand' must be a string")
    price = row.get("price")
    if price is not None:
        if isinstance(price, bool) or not isinstance(price, int | float):
            raise ValueError(f"item {raw_id!s}: 'price' must be a number")
        price = float(price)
    year = row.get("year")
    if year is not None and (isinstance(year, bool) or not isinstance(year, int)):
        raise ValueError(f"item {raw_id!s}: 'year' must be an integer")
    attributes_raw = row.get("attributes") or {}
    if not isinstance(attributes_raw, Mapping):
        raise ValueError(f"item {raw_id!s}: 'attributes' must be an object")
    attributes = {str(k): str(v) for k, v in attributes_raw.items() if str(v).strip()}
    return Item(
        item_id=str(raw_id),
        title=title.strip(),
        description=description.strip(),
        brand=brand.strip(),
        categories=_str_tuple(row.get("categories"), "categories"),
        features=_str_tuple(row.get("features"), "features"),
        price=price,
        year=year,
        genres=_str_tuple(row.get("genres"), "genres"),
        attributes=attributes,
    )


def document_text(item: Item, *, include_title: bool = True) -> str:
    """Text of an item as the encoder sees it (the "document" view).

    Fields are written as short labelled sentences so the encoder receives
    structure it can read ("Brand: Acme."). The title comes first because
    truncation cuts from the end.
    """
    parts: list[str] = []
    if include_title:
        parts.append(item.title.rstrip(".") + ".")
    if item.brand:
        parts.append(f"Brand: {item.brand}.")
    if item.categories:
        parts.append("Categories: " + ", ".join(item.categories) + ".")
    if item.genres:
        parts.append("Genres: " + ", ".join(item.genres) + ".")
    if item.year is not None:
        parts.append(f"Year: {item.year}.")
    for key, value in item.attributes.items():
        parts.append(f"{key.replace('_', ' ').capitalize()}: {value}.")
    if item.features:
        parts.append("Features: " + "; ".join(item.features) + ".")
    if item.description:
        parts.append(item.description)
    return " ".join(parts)


def item_text(item: Item) -> str:
    """The canonical item text embedded for ANN search and the recommenders."""
    return document_text(item, include_title=True)


def query_text(item: Item) -> str:
    """The "query" view used by contrastive fine-tuning: the title alone."""
    return item.title
