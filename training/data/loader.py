"""Loader for the shared dataset layout (docs/DATA.md).

A dataset is a folder with ``items.jsonl``, ``sequences.jsonl`` and an optional
``users.jsonl``. Every error names the file and the 1-based line number, because
this is also how users bring their own catalog and history.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from service.core.items import Item, item_from_dict

logger = logging.getLogger(__name__)


class DatasetError(ValueError):
    """Malformed or inconsistent dataset input; the message names file and line."""


@dataclass
class Sequence:
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
    users: dict[str, dict[str, Any]] | None = None

    @cached_property
    def item_ids(self) -> list[str]:
        return [it.item_id for it in self.items]

    @cached_property
    def item_index(self) -> dict[str, int]:
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
    """Yield (line number, object) for every non-blank line."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from exc
            if not isinstance(obj, dict):
                raise DatasetError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def load_items(path: Path, *, allow_empty_titles: bool = False) -> list[Item]:
    items: list[Item] = []
    seen: dict[str, int] = {}
    n_empty = 0
    for lineno, row in _json_lines(path):
        try:
            item = item_from_dict(row, allow_empty_title=allow_empty_titles)
        except ValueError as exc:
            raise DatasetError(f"{path}:{lineno}: {exc}") from exc
        n_empty += not item.title
        if item.item_id in seen:
            raise DatasetError(
                f"{path}:{lineno}: duplicate item_id {item.item_id!r} (first seen on line {seen[item.item_id]})"
            )
        seen[item.item_id] = lineno
        items.append(item)
    if not items:
        raise DatasetError(f"{path}: no items")
    if n_empty:
        logger.warning("%s: %d item(s) with an empty title (allowed by allow_empty_titles)", path, n_empty)
    return items


def _parallel(row: dict[str, Any], key: str, n: int, path: Path, lineno: int, kind: type) -> list[Any] | None:
    value = row.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != n:
        raise DatasetError(f"{path}:{lineno}: {key!r} must be a list as long as 'items' ({n})")
    try:
        return [kind(v) for v in value]
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}:{lineno}: {key!r} holds a value that is not a {kind.__name__}") from exc


def load_sequences(path: Path, item_index: Mapping[str, int]) -> list[Sequence]:
    seqs: list[Sequence] = []
    seen: dict[str, int] = {}
    for lineno, row in _json_lines(path):
        uid = row.get("user_id")
        if not isinstance(uid, str | int) or isinstance(uid, bool) or not str(uid).strip():
            raise DatasetError(f"{path}:{lineno}: missing or invalid 'user_id'")
        uid = str(uid)
        if uid in seen:
            raise DatasetError(f"{path}:{lineno}: duplicate user_id {uid!r} (first seen on line {seen[uid]})")
        seen[uid] = lineno
        items = row.get("items")
        if not isinstance(items, list) or not items:
            raise DatasetError(f"{path}:{lineno}: user {uid!r}: 'items' must be a non-empty list")
        ids: list[str] = []
        for raw in items:
            if not isinstance(raw, str | int) or isinstance(raw, bool):
                raise DatasetError(f"{path}:{lineno}: user {uid!r}: item ids must be strings")
            iid = str(raw)
            if iid not in item_index:
                raise DatasetError(f"{path}:{lineno}: user {uid!r}: unknown item_id {iid!r} (not in items.jsonl)")
            ids.append(iid)
        timestamps = _parallel(row, "timestamps", len(ids), path, lineno, int)
        ratings = _parallel(row, "ratings", len(ids), path, lineno, float)
        seqs.append(Sequence(user_id=uid, items=ids, timestamps=timestamps, ratings=ratings))
    if not seqs:
        raise DatasetError(f"{path}: no sequences")
    return seqs


def load_users(path: Path) -> dict[str, dict[str, Any]]:
    users: dict[str, dict[str, Any]] = {}
    for lineno, row in _json_lines(path):
        uid = row.get("user_id")
        if not isinstance(uid, str | int) or isinstance(uid, bool) or not str(uid).strip():
            raise DatasetError(f"{path}:{lineno}: missing or invalid 'user_id'")
        if str(uid) in users:
            raise DatasetError(f"{path}:{lineno}: duplicate user_id {uid!r}")
        users[str(uid)] = {k: v for k, v in row.items() if k != "user_id"}
    return users


def load_dataset(root: Path | str, *, require_sequences: bool = True, allow_empty_titles: bool = False) -> Dataset:
    """Load and validate a dataset folder in the shared layout."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    t0 = time.perf_counter()
    items = load_items(root / "items.jsonl", allow_empty_titles=allow_empty_titles)
    index = {it.item_id: i for i, it in enumerate(items)}
    seq_path = root / "sequences.jsonl"
    if seq_path.is_file():
        sequences = load_sequences(seq_path, index)
    elif require_sequences:
        raise DatasetError(f"{seq_path}: file not found (this job needs interaction sequences)")
    else:
        sequences = []
    users_path = root / "users.jsonl"
    users = load_users(users_path) if users_path.is_file() else None
    ds = Dataset(name=root.resolve().name, root=root, items=items, sequences=sequences, users=users)
    logger.info(
        "loaded %s: %d items, %d users, %d interactions%s in %.1fs",
        ds.name,
        ds.n_items,
        ds.n_users,
        ds.n_interactions,
        f", {len(users)} profiles" if users else "",
        time.perf_counter() - t0,
    )
    return ds
