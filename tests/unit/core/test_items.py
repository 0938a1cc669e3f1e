"""Item parsing errors, payloads and the canonical item text."""

from __future__ import annotations

from typing import Any

import pytest

from service.core.items import Item, item_from_dict, item_text, query_text


def test_full_item_parses_and_payload_round_trips() -> None:
    row: dict[str, Any] = {
        "item_id": 42,
        "title": "  Rose Serum ",
        "description": "Light serum.",
        "brand": "Acme",
        "categories": ["Beauty", " Skin Care ", ""],
        "features": "30 ml",
        "price": 12,
        "year": 2020,
        "attributes": {"color": "red", "empty": " "},
        "unknown_field": "ignored",
    }
    item = item_from_dict(row)
    assert item.item_id == "42" and item.title == "Rose Serum"
    assert item.categories == ("Beauty", "Skin Care") and item.features == ("30 ml",)
    assert item.price == 12.0 and isinstance(item.price, float)
    assert dict(item.attributes) == {"color": "red"}
    payload = item.payload()
    assert payload["price"] == 12.0 and payload["categories"] == ["Beauty", "Skin Care"]
    # the payload is what the index stores and the service reads back: same item, same text
    again = item_from_dict(payload)
    assert again == item and item_text(again) == item_text(item)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"title": "x"}, "item_id"),
        ({"item_id": " ", "title": "x"}, "item_id"),
        ({"item_id": ["a"], "title": "x"}, "'item_id' must be a string"),
        ({"item_id": "a"}, "title"),
        ({"item_id": "a", "title": "x", "price": "cheap"}, "price"),
        ({"item_id": "a", "title": "x", "price": True}, "price"),
        ({"item_id": "a", "title": "x", "year": 2.5}, "year"),
        ({"item_id": "a", "title": "x", "description": 3}, "description"),
        ({"item_id": "a", "title": "x", "categories": [{"a": 1}]}, "categories"),
        ({"item_id": "a", "title": "x", "attributes": ["a"]}, "attributes"),
    ],
)
def test_bad_rows_raise_naming_the_field(row: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        item_from_dict(row)


def test_non_object_is_rejected() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        item_from_dict(["a"])  # type: ignore[arg-type]


def test_item_text_is_labelled_and_title_first() -> None:
    item = Item(
        item_id="1",
        title="Lip balm.",
        brand="Acme",
        categories=("Makeup", "Lips"),
        features=("SPF 15", "vegan"),
        description="Keeps lips soft.",
    )
    text = item_text(item)
    assert text.startswith("Lip balm. Brand: Acme. Categories: Makeup, Lips.")
    assert "Features: SPF 15; vegan." in text and text.endswith("Keeps lips soft.")
    assert query_text(item) == "Lip balm."
    # every field changes the text (so a reindex notices any change)
    assert item_text(Item(item_id="1", title="Lip balm.", brand="Other")) != item_text(
        Item(item_id="1", title="Lip balm.", brand="Acme")
    )
