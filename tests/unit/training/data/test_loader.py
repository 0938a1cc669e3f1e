"""Loader for the shared dataset layout: good data loads, every bad input names file and line."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from training.data.loader import DatasetError, load_dataset, load_items, load_sequences, load_users

ITEMS: list[dict[str, Any]] = [
    {"item_id": "A1", "title": "Argan shampoo", "brand": "Velmo", "categories": ["Beauty", "Hair Care"], "price": 9.5},
    {"item_id": "B2", "title": "Argan conditioner", "description": "Soft hair.", "features": ["250 ml"]},
    {"item_id": "C3", "title": "Toy Story", "year": 1995, "genres": ["Animation", "Comedy"]},
    {"item_id": "D4", "title": "Camp pillow", "attributes": {"color": "grey"}},
]
SEQUENCES: list[dict[str, Any]] = [
    {"user_id": "u1", "items": ["A1", "B2", "C3"], "timestamps": [10, 20, 30], "ratings": [5, 4.5, 3]},
    {"user_id": "u2", "items": ["D4", "A1"]},
    {"user_id": "u3", "items": ["C3", "C3", "B2", "A1"], "timestamps": [1, 2, 3, 4]},
]
USERS: list[dict[str, Any]] = [
    {"user_id": "u1", "age": 31, "occupation": "chef"},
    {"user_id": "u9", "age": 50},  # a profile without a sequence is fine
]


def _lines(rows: list[Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def write_dataset(
    root: Path,
    items: str | None = None,
    sequences: str | None = None,
    users: str | None = None,
    *,
    with_sequences: bool = True,
    with_users: bool = True,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "items.jsonl").write_text(_lines(ITEMS) if items is None else items, encoding="utf-8")
    if with_sequences:
        (root / "sequences.jsonl").write_text(_lines(SEQUENCES) if sequences is None else sequences, encoding="utf-8")
    if with_users:
        (root / "users.jsonl").write_text(_lines(USERS) if users is None else users, encoding="utf-8")
    return root


def test_good_dataset_loads(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path / "shop"))
    assert ds.name == "shop"
    assert (ds.n_items, ds.n_users, ds.n_interactions) == (4, 3, 9)
    assert ds.item_ids == ["A1", "B2", "C3", "D4"]
    assert ds.item_index == {"A1": 0, "B2": 1, "C3": 2, "D4": 3}
    a1, b2, c3, d4 = ds.items
    assert (a1.brand, a1.categories, a1.price) == ("Velmo", ("Beauty", "Hair Care"), 9.5)
    assert (b2.description, b2.features) == ("Soft hair.", ("250 ml",))
    assert (c3.year, c3.genres) == (1995, ("Animation", "Comedy"))
    assert dict(d4.attributes) == {"color": "grey"}
    s1, s2, s3 = ds.sequences
    assert (s1.user_id, s1.items, s1.timestamps, s1.ratings) == (
        "u1",
        ["A1", "B2", "C3"],
        [10, 20, 30],
        [5.0, 4.5, 3.0],
    )
    assert (s2.timestamps, s2.ratings) == (None, None)
    assert s3.items == ["C3", "C3", "B2", "A1"]  # repeats are kept
    assert ds.users == {"u1": {"age": 31, "occupation": "chef"}, "u9": {"age": 50}}


def test_without_users_file_users_is_none(tmp_path: Path) -> None:
    ds = load_dataset(write_dataset(tmp_path / "d", with_users=False))
    assert ds.users is None
    assert ds.n_users == 3


def test_catalog_only_needs_require_sequences_false(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "catalog", with_sequences=False, with_users=False)
    with pytest.raises(DatasetError, match=r"sequences\.jsonl: file not found"):
        load_dataset(root)
    ds = load_dataset(root, require_sequences=False)
    assert (ds.n_items, ds.n_users, ds.n_interactions) == (4, 0, 0)
    assert ds.sequences == []


def test_missing_folder_and_missing_items_file_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset folder not found") as exc:
        load_dataset(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(exc.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="file not found") as exc:
        load_dataset(tmp_path / "empty")
    assert str(tmp_path / "empty" / "items.jsonl") in str(exc.value)


def test_blank_lines_are_skipped_but_counted_and_bom_is_accepted(tmp_path: Path) -> None:
    items = "\ufeff" + json.dumps(ITEMS[0]) + "\n\n   \n" + json.dumps(ITEMS[0]) + "\n"
    with pytest.raises(DatasetError, match=r"items\.jsonl:4: duplicate item_id 'A1' \(first seen on line 1\)"):
        load_items(write_dataset(tmp_path, items=items) / "items.jsonl")


def test_empty_titles_are_errors_unless_allowed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    items = _lines([*ITEMS, {"item_id": "E5", "title": "  "}])
    root = write_dataset(tmp_path, items=items)
    with pytest.raises(DatasetError, match=r"items\.jsonl:5: item E5: missing or empty 'title'"):
        load_dataset(root)
    with caplog.at_level(logging.WARNING, logger="training.data.loader"):
        ds = load_dataset(root, allow_empty_titles=True)
    assert ds.items[-1].title == ""
    assert "1 item(s) with an empty title" in caplog.text


def test_backwards_timestamps_load_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seqs = _lines([{"user_id": "u1", "items": ["A1", "B2"], "timestamps": [20, 10]}])
    with caplog.at_level(logging.WARNING, logger="training.data.loader"):
        ds = load_dataset(write_dataset(tmp_path, sequences=seqs))
    assert ds.sequences[0].timestamps == [20, 10]
    assert "1 sequence(s) with timestamps going backwards" in caplog.text


def test_integral_float_timestamps_are_accepted(tmp_path: Path) -> None:
    seqs = _lines([{"user_id": "u1", "items": ["A1", "B2"], "timestamps": [1.6e9, 1.7e9]}])
    ds = load_dataset(write_dataset(tmp_path, sequences=seqs))
    assert ds.sequences[0].timestamps == [1_600_000_000, 1_700_000_000]


def _items_with(line: str, at: int = 2) -> str:
    rows = [json.dumps(r) for r in ITEMS]
    rows.insert(at - 1, line)
    return "\n".join(rows) + "\n"


def _seqs_with(row: Any, at: int = 2) -> str:
    rows = [json.dumps(r) for r in SEQUENCES]
    rows.insert(at - 1, row if isinstance(row, str) else json.dumps(row))
    return "\n".join(rows) + "\n"


# (file, content, line, substring of the message)
ITEM_ERRORS = [
    ("invalid-json", _items_with('{"item_id": "X", "title": '), 2, "invalid JSON"),
    ("not-an-object", _items_with('["X", "title"]'), 2, "expected a JSON object, got an array"),
    (
        "duplicate-id",
        _items_with(json.dumps({"item_id": "C3", "title": "again"}), 4),
        4,
        "duplicate item_id 'C3' (first seen on line 3)",
    ),
    ("empty-title", _items_with(json.dumps({"item_id": "X", "title": ""})), 2, "missing or empty 'title'"),
    ("missing-title", _items_with(json.dumps({"item_id": "X"})), 2, "'title' must be a string"),
    ("int-id", _items_with(json.dumps({"item_id": 17, "title": "t"})), 2, "'item_id' must be a string, got a number"),
    ("missing-id", _items_with(json.dumps({"title": "t"})), 2, "missing 'item_id'"),
    ("bad-price", _items_with(json.dumps({"item_id": "X", "title": "t", "price": "cheap"}), 4), 4, "'price' must be a"),
    (
        "bad-categories",
        _items_with(json.dumps({"item_id": "X", "title": "t", "categories": {"a": 1}})),
        2,
        "categories",
    ),
]


@pytest.mark.parametrize(("case", "content", "line", "message"), ITEM_ERRORS, ids=[c[0] for c in ITEM_ERRORS])
def test_item_errors_name_file_and_line(tmp_path: Path, case: str, content: str, line: int, message: str) -> None:
    root = write_dataset(tmp_path / case, items=content)
    with pytest.raises(DatasetError) as exc:
        load_dataset(root)
    assert f"items.jsonl:{line}: " in str(exc.value)
    assert message in str(exc.value)
    assert str(root / "items.jsonl") in str(exc.value)


@pytest.mark.parametrize("content", ["", "\n\n"], ids=["empty", "blank-lines"])
def test_empty_items_file_is_an_error(tmp_path: Path, content: str) -> None:
    with pytest.raises(DatasetError, match=r"items\.jsonl: no items"):
        load_dataset(write_dataset(tmp_path, items=content))


def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    root = write_dataset(tmp_path)
    (root / "items.jsonl").write_bytes(_lines(ITEMS[:2]).encode() + b'{"item_id": "X", "title": "\xff"}\n')
    with pytest.raises(DatasetError, match=r"items\.jsonl:3: not valid UTF-8"):
        load_dataset(root)


SEQ_ERRORS = [
    ("unknown-item", {"user_id": "u7", "items": ["A1", "ZZ9"]}, "unknown item_id 'ZZ9'"),
    ("empty-items", {"user_id": "u7", "items": []}, "user 'u7': 'items' is empty"),
    ("missing-items", {"user_id": "u7"}, "'items' must be a list of item ids, got nothing"),
    ("items-not-list", {"user_id": "u7", "items": "A1"}, "'items' must be a list of item ids, got a string"),
    ("int-item-id", {"user_id": "u7", "items": ["A1", 3]}, "items[1] must be a string item id, got a number"),
    ("int-user-id", {"user_id": 7, "items": ["A1"]}, "'user_id' must be a string, got a number"),
    ("missing-user-id", {"items": ["A1"]}, "missing 'user_id'"),
    ("duplicate-user", {"user_id": "u1", "items": ["A1"]}, "duplicate user_id 'u1' (first seen on line 1)"),
    (
        "short-timestamps",
        {"user_id": "u7", "items": ["A1", "B2"], "timestamps": [1]},
        "'timestamps' must be a list as long",
    ),
    (
        "long-ratings",
        {"user_id": "u7", "items": ["A1"], "ratings": [1, 2]},
        "'ratings' must be a list as long as 'items' (1)",
    ),
    ("text-timestamp", {"user_id": "u7", "items": ["A1"], "timestamps": ["2020"]}, "timestamps[0] must be whole unix"),
    ("fraction-timestamp", {"user_id": "u7", "items": ["A1"], "timestamps": [1.5]}, "timestamps[0] must be whole unix"),
    ("bool-rating", {"user_id": "u7", "items": ["A1"], "ratings": [True]}, "ratings[0] must be a number"),
    ("invalid-json", '{"user_id": "u7", "items": [', "invalid JSON"),
    ("not-an-object", "[1, 2]", "expected a JSON object"),
]


@pytest.mark.parametrize(("case", "row", "message"), SEQ_ERRORS, ids=[c[0] for c in SEQ_ERRORS])
def test_sequence_errors_name_file_and_line(tmp_path: Path, case: str, row: Any, message: str) -> None:
    root = write_dataset(tmp_path / case, sequences=_seqs_with(row, at=3))
    with pytest.raises(DatasetError) as exc:
        load_dataset(root)
    assert f"{root / 'sequences.jsonl'}:3: " in str(exc.value)
    assert message in str(exc.value)


def test_empty_sequences_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"sequences\.jsonl: no sequences"):
        load_dataset(write_dataset(tmp_path, sequences=""))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"user_id": "u1", "age": 3}, "duplicate user_id 'u1' (first seen on line 1)"),
        ({"user_id": 5, "age": 3}, "'user_id' must be a string"),
        ("42", "expected a JSON object, got a number"),
    ],
)
def test_user_errors_name_file_and_line(tmp_path: Path, row: Any, message: str) -> None:
    users = _lines(USERS) + (row if isinstance(row, str) else json.dumps(row)) + "\n"
    root = write_dataset(tmp_path, users=users)
    with pytest.raises(DatasetError) as exc:
        load_dataset(root)
    assert f"users.jsonl:3: {message}" in str(exc.value)


def test_direct_loaders_match_load_dataset(tmp_path: Path) -> None:
    root = write_dataset(tmp_path)
    items = load_items(root / "items.jsonl")
    seqs = load_sequences(root / "sequences.jsonl", {it.item_id: i for i, it in enumerate(items)})
    users = load_users(root / "users.jsonl")
    ds = load_dataset(root)
    assert items == ds.items
    assert seqs == ds.sequences
    assert users == ds.users


def test_dataset_error_is_a_value_error() -> None:
    assert issubclass(DatasetError, ValueError)
