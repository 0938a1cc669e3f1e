"""Published snapshot files of the embedded multi-process mode: what the writer writes, a reader reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from service.config import Settings
from service.core.items import item_from_dict
from service.stores.qdrant import CatalogSnapshot
from service.workers import KEEP_FILES, MAX_SOCKET_DIR, POINTER, Pointer, read_snapshot, socket_dir, write_snapshot
from tests.conftest import make_catalog


def _snapshot(n: int = 12, seqrec: bool = True, collection: str = "items_v3") -> CatalogSnapshot:
    rng = np.random.default_rng(0)
    items = [item_from_dict(r) for r in make_catalog(n)]
    text = rng.standard_normal((n, 8)).astype(np.float32)
    seq = rng.standard_normal((n, 4)).astype(np.float32) if seqrec else None
    return CatalogSnapshot.from_arrays(collection, items, text, seq)


def test_a_published_snapshot_reads_back_equal(tmp_path: Path) -> None:
    snap = _snapshot()
    sids = np.arange(12 * 3, dtype=np.int32).reshape(12, 3)
    pointer = write_snapshot(tmp_path, snap, sids=sids, model_version="v1", run_id="run")
    assert Pointer.read(tmp_path) == pointer
    assert (pointer.collection, pointer.items, pointer.model_version, pointer.run_id) == ("items_v3", 12, "v1", "run")
    got, got_sids = read_snapshot(tmp_path, pointer)
    assert got.collection == snap.collection
    assert got.items == snap.items and got.payloads == snap.payloads
    np.testing.assert_array_equal(got.text_vectors, snap.text_vectors)
    assert got.seqrec_vectors is not None and snap.seqrec_vectors is not None
    np.testing.assert_array_equal(got.seqrec_vectors, snap.seqrec_vectors)
    assert got_sids is not None
    np.testing.assert_array_equal(got_sids, sids)
    q = snap.text_vectors[3]
    assert got.searcher.search("text", q, 5, None) == snap.searcher.search("text", q, 5, None)


def test_without_seqrec_or_sids(tmp_path: Path) -> None:
    snap = _snapshot(seqrec=False)
    got, sids = read_snapshot(tmp_path, write_snapshot(tmp_path, snap, sids=None, model_version="v", run_id="r"))
    assert got.seqrec_vectors is None and sids is None and len(got) == 12


def test_the_pointer_names_the_newest_and_old_files_are_pruned(tmp_path: Path) -> None:
    pointers = [
        write_snapshot(tmp_path, _snapshot(collection=f"items_v{i}"), sids=None, model_version="v", run_id="r")
        for i in range(KEEP_FILES + 3)
    ]
    assert Pointer.read(tmp_path) == pointers[-1]
    files = sorted(p.name for p in tmp_path.glob("snapshot-*.npz"))
    assert files == sorted(p.file for p in pointers[-KEEP_FILES:])
    assert not list(tmp_path.glob(".*.tmp"))  # every write ended in a rename


def test_a_missing_or_unreadable_pointer_is_none(tmp_path: Path) -> None:
    assert Pointer.read(tmp_path) is None
    (tmp_path / POINTER).write_text("{not json")
    assert Pointer.read(tmp_path) is None
    (tmp_path / POINTER).write_text('{"generation": "x"}')
    assert Pointer.read(tmp_path) is None


def test_socket_dir_falls_back_to_a_short_path(tmp_path: Path) -> None:
    short = Settings(data_dir=tmp_path / "d")
    assert socket_dir(short) == (tmp_path / "d" / "run").absolute()
    deep = tmp_path / ("x" * 120)
    long = Settings(data_dir=deep)
    path = socket_dir(long)
    assert len(str(path)) <= MAX_SOCKET_DIR and path != deep / "run"
    assert socket_dir(Settings(data_dir=deep)) == path  # the same data dir always maps to the same folder
