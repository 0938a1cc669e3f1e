"""ItemLog compaction: one line per id, atomic, and no line appended while it runs is lost."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from service.core.items import Item
from service.stores.item_log import ItemLog, entry_record

DIM = 3


def up(item_id: str, title: str, seq: bool = True) -> dict[str, Any]:
    v = np.arange(DIM, dtype=np.float32) / 7 + len(title)  # values float32 must round-trip exactly
    return {
        "op": "upsert",
        "item": Item(item_id, title, price=1.5).payload(),
        "text": v.tolist(),
        "seqrec": (v * 3).tolist() if seq else None,
        "model_version": "m1",
    }


def down(item_id: str) -> dict[str, Any]:
    return {"op": "delete", "item_id": item_id}


def state_of(log: ItemLog) -> dict[str, dict[str, Any]]:
    return {iid: entry_record(e) for iid, e in log.state.items()}


def reloaded(path: Path) -> ItemLog:
    log = ItemLog(path)
    log.load()
    return log


def test_compaction_keeps_the_latest_line_per_id_tombstones_included(tmp_path: Path) -> None:
    path = tmp_path / "items" / "log.jsonl"
    log = ItemLog(path)
    assert log.compact() is None  # no file yet
    log.append([up("A", "a1"), up("B", "b1", seq=False), up("C", "c1")])
    assert log.compact() is None  # nothing superseded: not rewritten
    log.append([up("A", "a2"), down("B")])
    log.append([up("A", "a3"), down("D")])
    before = state_of(log)
    assert log.superseded == 3
    result = log.compact()
    assert result is not None and (result.lines_before, result.lines_after) == (7, 4)
    assert result.bytes_after < result.bytes_before
    assert len(path.read_text().splitlines()) == 4 and log.superseded == 0
    again = reloaded(path)
    assert state_of(again) == before  # the same state after a restart
    assert again.state["A"].item is not None and again.state["A"].item.title == "a3"
    assert again.state["B"].item is None and again.state["D"].item is None  # tombstones stay
    np.testing.assert_array_equal(again.state["C"].text_vector, log.state["C"].text_vector)
    assert not log.tmp_path.exists()
    again.append([up("E", "e1")])  # appends go on into the compacted file
    assert "E" in reloaded(path).state


def test_lines_appended_while_the_bulk_is_written_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = ItemLog(path)
    log.append([up(f"I{i}", "t1") for i in range(50)])
    log.append([up(f"I{i}", "t2") for i in range(50)])

    def meanwhile() -> None:  # acknowledged writes racing with the compaction
        log.append([up("I0", "t3"), down("I1"), up("NEW", "n1")])
        log.append([up("NEW", "n2")])

    result = log.compact(on_written=meanwhile)
    assert result is not None and result.appended_during == 4
    again = reloaded(path)
    assert state_of(again) == state_of(log)
    assert again.state["I0"].item.title == "t3" and again.state["I1"].item is None  # type: ignore[union-attr]
    assert again.state["NEW"].item.title == "n2"  # type: ignore[union-attr]
    assert again.lines == log.lines == 50 + 4  # the 50 compacted + the 4 carried


def test_a_compaction_killed_before_its_rename_leaves_the_old_log(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = ItemLog(path)
    log.append([up("A", "a1"), up("A", "a2"), down("B")])
    expected = state_of(log)
    log.tmp_path.write_bytes(path.read_bytes()[:40])  # a half-written new file, never renamed
    again = reloaded(path)
    assert state_of(again) == expected and not log.tmp_path.exists()
    assert again.compact() is not None and state_of(reloaded(path)) == expected


def test_concurrent_appends_during_repeated_compactions_are_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = ItemLog(path)
    log.append([up(f"I{i}", "t0") for i in range(200)])
    stop = threading.Event()
    acked: dict[str, str] = {}

    def writer() -> None:
        n = 0
        while not stop.is_set() and n < 400:
            iid = f"I{n % 250}"
            log.append([up(iid, f"t{n}")])
            acked[iid] = f"t{n}"  # acknowledged: fsynced
            n += 1

    t = threading.Thread(target=writer)
    t.start()
    compactions = 0
    while t.is_alive():
        if log.compact() is not None:
            compactions += 1
    t.join()
    stop.set()
    assert compactions >= 1
    again = reloaded(path)
    assert state_of(again) == state_of(log)
    for iid, title in acked.items():
        assert again.state[iid].item.title == title  # type: ignore[union-attr]


def test_lines_written_by_the_json_module_still_load(tmp_path: Path) -> None:
    """Logs written before orjson (json.dumps, which also writes NaN) read back the same."""
    import json

    path = tmp_path / "log.jsonl"
    rec = up("A", "a1")
    old = {**up("B", "b1"), "item": {**Item("B", "b1").payload(), "price": float("nan")}}
    path.write_text(json.dumps(rec, separators=(",", ":")) + "\n" + json.dumps(old) + "\n")
    log = reloaded(path)
    assert log.lines == 2 and log.torn_lines == 0
    assert entry_record(log.state["A"]) == rec
    price = log.state["B"].item.price  # type: ignore[union-attr]
    assert price is not None and np.isnan(price)
