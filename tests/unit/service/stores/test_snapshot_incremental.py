"""apply_changes derives the next snapshot in O(changed rows) (row buffers, exact searcher, category
index patched, not rebuilt): every derived snapshot must equal one built from scratch from the same
items, and no snapshot handed out earlier (requests may still hold it) may change."""

from __future__ import annotations

import numpy as np
import pytest

from service.core.index import VECTOR_SEQREC, VECTOR_TEXT, RowStore, SearchFilter
from service.core.items import Item
from service.stores.qdrant import CatalogSnapshot, ItemChange, apply_changes

T, D = 6, 3
CATS = ["a", "b", "c", "d"]


def _item(rng: np.random.Generator, iid: str) -> Item:
    cats = tuple(str(c) for c in rng.choice(CATS, size=int(rng.integers(0, 3)), replace=False))
    price = None if rng.random() < 0.2 else float(rng.integers(1, 100))
    return Item(iid, f"title {iid} {rng.integers(1000)}", categories=cats, price=price)


def _change(rng: np.random.Generator, item: Item, *, seqrec: bool = True) -> ItemChange:
    text = rng.normal(size=T).astype(np.float32)
    return ItemChange(item, text, rng.normal(size=D).astype(np.float32) if seqrec else None)


def _frozen(s: CatalogSnapshot) -> dict[str, object]:
    """Deep copies of everything a request reads from a snapshot."""
    assert s.seqrec_vectors is not None
    return {
        "ids": list(s.item_ids),
        "payloads": [dict(p) for p in s.payloads],
        "text": s.text_vectors.copy(),
        "seq": s.seqrec_vectors.copy(),
        "unit": s.searcher._vectors[VECTOR_TEXT].copy(),
        "searcher_seq": s.searcher._vectors[VECTOR_SEQREC].copy(),
        "price": s.searcher._price.copy(),
        "cats": {c: sorted(r.tolist()) for c, r in s.searcher._rows_by_category.items()},
        "row_of": dict(s.row_of),
    }


def _assert_like_fresh(s: CatalogSnapshot) -> None:
    assert s.seqrec_vectors is not None
    fresh = CatalogSnapshot(
        s.collection, list(s.items), [dict(p) for p in s.payloads], s.text_vectors.copy(), s.seqrec_vectors.copy()
    )
    assert s.digest == fresh.digest and s.row_of == fresh.row_of
    assert s.searcher.item_ids == fresh.searcher.item_ids and s.searcher.row_of == fresh.searcher.row_of
    for name in (VECTOR_TEXT, VECTOR_SEQREC):
        np.testing.assert_array_equal(s.searcher._vectors[name], fresh.searcher._vectors[name])
    np.testing.assert_array_equal(s.searcher._price, fresh.searcher._price)
    assert {c: sorted(r.tolist()) for c, r in s.searcher._rows_by_category.items()} == {
        c: sorted(r.tolist()) for c, r in fresh.searcher._rows_by_category.items()
    }
    rng = np.random.default_rng(len(s))
    filters = [
        None,
        SearchFilter(categories=("a", "c")),
        SearchFilter(price_min=10.0, price_max=60.0, exclude_ids=tuple(s.item_ids[:2])),
    ]
    for flt in filters:
        for name, dim in ((VECTOR_TEXT, T), (VECTOR_SEQREC, D)):
            q = rng.normal(size=dim)
            assert s.searcher.search(name, q, 7, flt) == fresh.searcher.search(name, q, 7, flt)


def _assert_unchanged(s: CatalogSnapshot, frozen: dict[str, object]) -> None:
    now = _frozen(s)
    for key, value in frozen.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(now[key], value, err_msg=key)  # type: ignore[arg-type]
        else:
            assert now[key] == value, key


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_derived_snapshots_equal_fresh_ones_and_old_ones_never_change(seed: int) -> None:
    rng = np.random.default_rng(seed)
    items = [_item(rng, f"I{i}") for i in range(20)]
    base = CatalogSnapshot.from_arrays(
        "items_v1", items, rng.normal(size=(20, T)).astype(np.float32), rng.normal(size=(20, D)).astype(np.float32)
    )
    history: list[tuple[CatalogSnapshot, dict[str, object]]] = [(base, _frozen(base))]
    next_id = 0
    for step in range(40):
        # mostly the newest snapshot; now and then an older one (a second child of the same parent:
        # its appends must not land in rows the first child already handed out)
        parent = history[-1][0] if step % 7 else history[int(rng.integers(len(history)))][0]
        kind = 0 if step % 7 == 0 else step % 4  # a second child appends: the case the buffer must refuse
        upserts: list[ItemChange] = []
        deletes: list[str] = []
        if kind in (0, 1):  # appends only
            for _ in range(int(rng.integers(1, 6))):
                upserts.append(_change(rng, _item(rng, f"N{next_id}")))
                next_id += 1
        if kind in (1, 2):  # updates of served items (one keeps its seqrec vector)
            for j, iid in enumerate(rng.choice(parent.item_ids, size=3, replace=False).tolist()):
                upserts.append(_change(rng, _item(rng, iid), seqrec=j != 0))
        if kind in (2, 3):  # deletes: served ids (maybe the last row), one unknown id
            deletes = [*rng.choice(parent.item_ids, size=2, replace=False).tolist(), "NOPE"]
            if kind == 3:
                deletes.append(parent.item_ids[-1])
                upserts.append(_change(rng, _item(rng, f"N{next_id}")))  # appended, then maybe moved
                next_id += 1
        new, rows, removed = apply_changes(parent, upserts, deletes)
        assert rows == sorted(set(rows)) and all(r < len(new) for r in rows)
        assert set(removed) <= set(parent.item_ids)
        for u in upserts:
            if u.item.item_id in new.row_of:
                r = new.row_of[u.item.item_id]
                assert new.items[r] == u.item
                np.testing.assert_array_equal(new.text_vectors[r], u.text_vector)
                assert new.seqrec_vectors is not None
                if u.seqrec_vector is not None:
                    np.testing.assert_array_equal(new.seqrec_vectors[r], u.seqrec_vector)
        _assert_like_fresh(new)
        history.append((new, _frozen(new)))
        for old, frozen in history:
            _assert_unchanged(old, frozen)


def test_appends_share_the_buffer_and_changes_to_served_rows_copy() -> None:
    rng = np.random.default_rng(3)
    items = [_item(rng, f"I{i}") for i in range(10)]
    base = CatalogSnapshot.from_arrays(
        "items_v1", items, rng.normal(size=(10, T)).astype(np.float32), rng.normal(size=(10, D)).astype(np.float32)
    )
    # the first append grows the (full) buffer: one copy, with room for more
    one, _, _ = apply_changes(base, [_change(rng, _item(rng, "A"))], [])
    assert not np.shares_memory(one.text_vectors, base.text_vectors)
    assert one.text_store.data.shape[0] > len(one)
    # later appends write past the rows served so far: same buffer, no copy of the catalog
    two, _, _ = apply_changes(one, [_change(rng, _item(rng, "B")), _change(rng, _item(rng, "C"))], [])
    assert two.text_store is one.text_store and np.shares_memory(two.text_vectors, one.text_vectors)
    assert two.searcher._text_store is one.searcher._text_store
    # a second child of `one` may not write into the rows `two` handed out: it gets its own buffer
    other, _, _ = apply_changes(one, [_change(rng, _item(rng, "X"))], [])
    assert other.text_store is not one.text_store
    assert two.item_ids[-2:] == ["B", "C"] and other.item_ids[-1] == "X"
    np.testing.assert_array_equal(two.text_vectors[-2:], two.text_store.data[11:13])
    # an update of a served row copies (the rows `two` serves stay as they were)
    before = two.text_vectors.copy()
    upd, _, _ = apply_changes(two, [_change(rng, _item(rng, "I3"))], [])
    assert not np.shares_memory(upd.text_vectors, two.text_vectors)
    np.testing.assert_array_equal(two.text_vectors, before)


def test_row_store_checks_its_rows() -> None:
    store = RowStore.wrap(np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="must all be written"):
        store.patched(3, 5, np.array([3]), np.ones((1, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="outside"):
        store.patched(3, 3, np.array([3]), np.ones((1, 2), dtype=np.float32))
    grown, view = store.patched(3, 4, np.array([3, 0]), np.array([[1, 1], [2, 2]], dtype=np.float32))
    assert grown is not store and view.tolist() == [[2, 2], [0, 0], [0, 0], [1, 1]]
    assert store.data.tolist() == [[0, 0]] * 3
