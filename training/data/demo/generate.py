"""Generate the demo shop (:func:`generate`) and write it in the shared dataset layout (:func:`generate_demo`)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, NamedTuple

from training.config import DemoConfig
from training.data.demo.catalog import CATALOG
from training.data.demo.items import item_row, make_brands, make_catalog
from training.data.demo.sequences import Shop, make_sequence
from training.data.demo.stream import Stream
from training.data.demo.users import make_user

logger = logging.getLogger(__name__)


class Rows(NamedTuple):
    """The three files of the demo shop, as JSON-ready rows."""

    items: list[dict[str, Any]]
    sequences: list[dict[str, Any]]
    users: list[dict[str, Any]]


def _validate(cfg: DemoConfig) -> None:
    if cfg.n_items < 1 or cfg.n_users < 1:
        raise ValueError(f"demo needs at least one item and one user (got {cfg.n_items} items, {cfg.n_users} users)")
    if not 1 <= cfg.min_len <= cfg.max_len:
        raise ValueError(f"demo needs 1 <= min_len <= max_len (got {cfg.min_len}, {cfg.max_len})")


def generate(cfg: DemoConfig) -> Rows:
    """Return (items, sequences, users) as JSON-ready rows."""
    _validate(cfg)
    rs = Stream(cfg.seed)
    brands = make_brands(rs)
    items = make_catalog(cfg, rs, brands)
    shop = Shop(items, rs)
    leaves_of = shop.leaves_of
    depts = [d for d in CATALOG if leaves_of[d]]  # departments that have items (all unless the catalog is tiny)
    item_rows = [item_row(it, brands, rs, shop.complements[it.leaf]) for it in items]
    users: list[dict[str, Any]] = []
    sequences: list[dict[str, Any]] = []
    for u in range(cfg.n_users):
        user = make_user(u, rs, depts, leaves_of, brands)
        seq, stamps = make_sequence(user, shop, cfg, rs, depts)
        users.append(user.row)
        sequences.append(
            {"user_id": user.row["user_id"], "items": [item_rows[i]["item_id"] for i in seq], "timestamps": stamps}
        )
    return Rows(item_rows, sequences, users)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def generate_demo(out_dir: Path, config: DemoConfig | None = None) -> Path:
    """Write ``items.jsonl``, ``sequences.jsonl`` and ``users.jsonl`` into ``out_dir``; return ``out_dir``."""
    cfg = config or DemoConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = generate(cfg)
    _write_jsonl(out_dir / "items.jsonl", rows.items)
    _write_jsonl(out_dir / "sequences.jsonl", rows.sequences)
    _write_jsonl(out_dir / "users.jsonl", rows.users)
    logger.info(
        "demo data (seed %d): %d items, %d users, %d interactions -> %s in %.1fs",
        cfg.seed,
        len(rows.items),
        len(rows.sequences),
        sum(len(s["items"]) for s in rows.sequences),
        out_dir,
        time.perf_counter() - t0,
    )
    return out_dir
