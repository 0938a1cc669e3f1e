"""Loader for the shared dataset layout (docs/DATA.md, ../shared/data/README.md).

A dataset is a folder with ``items.jsonl``, ``sequences.jsonl`` and an optional
``users.jsonl``, one JSON object per line. Users bring their own catalog and
history in this layout, so every error is a :class:`DatasetError` whose message
starts with ``<file path>:<1-based line>:`` and says what is wrong with which id,
e.g. ``data/items.jsonl:17: duplicate item_id 'B00X' (first seen on line 3)``.

Ids must be JSON strings everywhere (``"17"``, not ``17``): a catalog that mixes
the two would otherwise silently fail to join with its sequences.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from typing import Any

from service.core.items import Item, item_from_dict

logger = logging.getLogger(__name__)

ITEMS_FILE = "items.jsonl"
SEQUENCES_FILE = "sequences.jsonl"
USERS_FILE = "users.jsonl"
_BOM = b"\xef\xbb\xbf"


class DatasetError(ValueError):
    """Malformed or inconsistent dataset input; the message names the file and the line."""


@dataclass
class Sequence:
    """One user's interactions, oldest first. ``timestamps`` / ``ratings`` run parallel to ``items``."""

    user_id: str
    items: list[str]
    timestamps: list[int] | None = None
    ratings: list[float] | None = None


@dataclass
class Dataset:
    name: str
    root: Path
    items: list[Item]
    sequences: list[Sequence]
    users: dict[str, dict[str, Any]] | None = None  # user_id -> profile fields (without user_id)

    @cached_property
    def item_ids(self) -> list[str]:
        return [it.item_id for it in self.items]

    @cached_property
    def item_index(self) -> dict[str, int]:
        """item_id -> position in ``items`` (the integer id used by splits and models)."""
        return {iid: i for i, iid in enumerate(self.item_ids)}

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return len(self.sequences)

    @property
    def n_interactions(self) -> int:
        return sum(len(s.items) for s in self.sequences)


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) for every non-blank line of a JSON-lines file."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            line = (raw[len(_BOM) :] if lineno == 1 and raw.startswith(_BOM) else raw).strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except UnicodeDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: not valid UTF-8 ({exc.reason})") from exc
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
            if not isinstance(obj, dict):
                raise DatasetError(f"{path}:{lineno}: expected a JSON object, got {_json_type(obj)}")
            yield lineno, obj


def _json_type(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _string_id(row: Mapping[str, Any], key: str, path: Path, lineno: int) -> str:
    value = row.get(key)
    if value is None:
        raise DatasetError(f"{path}:{lineno}: missing {key!r}")
    if not isinstance(value, str):
        raise DatasetError(f"{path}:{lineno}: {key!r} must be a string, got {_json_type(value)} ({value!r})")
    if not value.strip():
        raise DatasetError(f"{path}:{lineno}: empty {key!r}")
    return value


def load_items(path: Path, *, allow_empty_titles: bool = False) -> list[Item]:
    """Parse ``items.jsonl``. Empty titles are errors unless ``allow_empty_titles`` (then logged)."""
    items: list[Item] = []
    seen: dict[str, int] = {}
    n_empty = 0
    for lineno, row in _json_lines(path):
        _string_id(row, "item_id", path, lineno)
        try:
            item = item_from_dict(row, allow_empty_title=allow_empty_titles)
        except ValueError as exc:
            raise DatasetError(f"{path}:{lineno}: {exc}") from exc
        if item.item_id in seen:
            raise DatasetError(
                f"{path}:{lineno}: duplicate item_id {item.item_id!r} (first seen on line {seen[item.item_id]})"
            )
        seen[item.item_id] = lineno
        n_empty += not item.title
        items.append(item)
    if not items:
        raise DatasetError(f"{path}: no items (the file is empty)")
    if n_empty:
        logger.warning("%s: %d item(s) with an empty title (allowed by allow_empty_titles)", path, n_empty)
    return items


def _timestamps(value: Any, n: int, path: Path, lineno: int, uid: str) -> list[int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != n:
        got = f"{len(value)} value(s)" if isinstance(value, list) else _json_type(value)
        raise DatasetError(
            f"{path}:{lineno}: user {uid!r}: 'timestamps' must be a list as long as 'items' ({n}), got {got}"
        )
    out: list[int] = []
    for pos, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and not v.is_integer()):
            raise DatasetError(
                f"{path}:{lineno}: user {uid!r}: timestamps[{pos}] must be whole unix seconds, got {v!r}"
            )
        out.append(int(v))
    return out


def _ratings(value: Any, n: int, path: Path, lineno: int, uid: str) -> list[float] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != n:
        got = f"{len(value)} value(s)" if isinstance(value, list) else _json_type(value)
        raise DatasetError(
            f"{path}:{lineno}: user {uid!r}: 'ratings' must be a list as long as 'items' ({n}), got {got}"
        )
    out: list[float] = []
    for pos, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise DatasetError(f"{path}:{lineno}: user {uid!r}: ratings[{pos}] must be a number, got {v!r}")
        out.append(float(v))
    return out


def load_sequences(path: Path, item_index: Mapping[str, int]) -> list[Sequence]:
    """Parse ``sequences.jsonl``; every item id must be a key of ``item_index``.

    Repeated items inside one sequence are kept (repeat purchases are real).
    Timestamps that go backwards are kept in file order and counted in one warning.
    """
    seqs: list[Sequence] = []
    seen: dict[str, int] = {}
    n_unordered = 0
    for lineno, row in _json_lines(path):
        uid = _string_id(row, "user_id", path, lineno)
        if uid in seen:
            raise DatasetError(f"{path}:{lineno}: duplicate user_id {uid!r} (first seen on line {seen[uid]})")
        seen[uid] = lineno
        raw_items = row.get("items")
        if not isinstance(raw_items, list):
            got = "nothing" if raw_items is None else _json_type(raw_items)
            raise DatasetError(f"{path}:{lineno}: user {uid!r}: 'items' must be a list of item ids, got {got}")
        if not raw_items:
            raise DatasetError(f"{path}:{lineno}: user {uid!r}: 'items' is empty")
        for pos, iid in enumerate(raw_items):
            if not isinstance(iid, str):
                raise DatasetError(
                    f"{path}:{lineno}: user {uid!r}: items[{pos}] must be a string item id, "
                    f"got {_json_type(iid)} ({iid!r})"
                )
            if iid not in item_index:
                raise DatasetError(f"{path}:{lineno}: user {uid!r}: unknown item_id {iid!r} (not in {ITEMS_FILE})")
        n = len(raw_items)
        timestamps = _timestamps(row.get("timestamps"), n, path, lineno, uid)
        ratings = _ratings(row.get("ratings"), n, path, lineno, uid)
        if timestamps is not None and any(b < a for a, b in pairwise(timestamps)):
            n_unordered += 1
        seqs.append(Sequence(user_id=uid, items=list(raw_items), timestamps=timestamps, ratings=ratings))
    if not seqs:
        raise DatasetError(f"{path}: no sequences (the file is empty)")
    if n_unordered:
        logger.warning("%s: %d sequence(s) with timestamps going backwards; file order is used", path, n_unordered)
    return seqs


def load_users(path: Path) -> dict[str, dict[str, Any]]:
    """Parse ``users.jsonl`` into user_id -> profile fields. Profiles are optional per user."""
    users: dict[str, dict[str, Any]] = {}
    lines: dict[str, int] = {}
    for lineno, row in _json_lines(path):
        uid = _string_id(row, "user_id", path, lineno)
        if uid in users:
            raise DatasetError(f"{path}:{lineno}: duplicate user_id {uid!r} (first seen on line {lines[uid]})")
        lines[uid] = lineno
        users[uid] = {k: v for k, v in row.items() if k != "user_id"}
    return users


def load_dataset(root: Path | str, *, require_sequences: bool = True, allow_empty_titles: bool = False) -> Dataset:
    """Load and validate a dataset folder in the shared layout.

    ``require_sequences=False`` accepts a catalog without ``sequences.jsonl``
    (e.g. ``Industrial``); the dataset then has no sequences. ``users.jsonl`` is
    read when present; sequences may name users it lacks and the reverse.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    t0 = time.perf_counter()
    items = load_items(root / ITEMS_FILE, allow_empty_titles=allow_empty_titles)
    seq_path = root / SEQUENCES_FILE
    ds = Dataset(name=root.resolve().name, root=root, items=items, sequences=[], users=None)
    if seq_path.is_file():
        ds.sequences = load_sequences(seq_path, ds.item_index)
    elif require_sequences:
        raise DatasetError(f"{seq_path}: file not found (this job needs interaction sequences)")
    users_path = root / USERS_FILE
    if users_path.is_file():
        ds.users = load_users(users_path)
    logger.info(
        "loaded %s: %d items, %d users, %d interactions%s in %.2fs",
        ds.name,
        ds.n_items,
        ds.n_users,
        ds.n_interactions,
        f", {len(ds.users)} profiles" if ds.users is not None else "",
        time.perf_counter() - t0,
    )
    return ds
