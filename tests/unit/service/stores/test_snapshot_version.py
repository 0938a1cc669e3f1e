"""CatalogSnapshot.version: changes with every applied item change, and depends only on the items
served (not on the order the changes came in), so workers serving the same items share cache keys."""

from __future__ import annotations

import numpy as np

from service.core.index import ROW_KEY, IndexedPoints
from service.core.items import Item
from service.stores.qdrant import CatalogSnapshot, ItemChange, apply_changes, content_digest

DIM = 4


def _items(n: int) -> list[Item]:
    return [Item(f"I{i}", f"title {i}", brand="b", categories=("c",), price=float(i)) for i in range(n)]


def _snap(items: list[Item], collection: str = "items_v1") -> CatalogSnapshot:
    rng = np.random.default_rng(0)
    return CatalogSnapshot.from_arrays(collection, items, rng.normal(size=(len(items), DIM)), None)


def _change(item: Item) -> ItemChange:
    return ItemChange(item, np.ones(DIM, dtype=np.float32), None)


def test_every_change_moves_the_version_and_undoing_it_moves_it_back() -> None:
    base = _snap(_items(5))
    new = Item("NEW", "new item")
    added, _, _ = apply_changes(base, [_change(new)], [])
    assert added.version != base.version and added.collection == base.collection
    updated, _, _ = apply_changes(added, [_change(Item("NEW", "new item", price=2.0))], [])
    assert updated.version not in (base.version, added.version)
    deleted, _, _ = apply_changes(updated, [], ["I2"])
    assert deleted.version not in (base.version, added.version, updated.version)
    # the incremental digest is the digest of what is served
    for s in (added, updated, deleted):
        assert s.digest == content_digest(s.items)
    # the same items again -> the same version (cached answers computed on them are valid again)
    back, _, _ = apply_changes(added, [], ["NEW"])
    assert back.version == base.version
    # a delete of an id that is not served changes nothing
    same, _, _ = apply_changes(base, [], ["NOPE"])
    assert same.version == base.version
    assert _snap(_items(5), "items_v2").version != base.version  # another collection


def test_version_is_order_free_and_survives_the_store_round_trip() -> None:
    a, b = Item("A", "a"), Item("B", "b", attributes={"color": "red"})
    base = _snap(_items(4))
    one, _, _ = apply_changes(base, [_change(a), _change(b)], ["I0"])
    two, _, _ = apply_changes(base, [], ["I0"])
    two, _, _ = apply_changes(two, [_change(b)], [])
    two, _, _ = apply_changes(two, [_change(a)], [])
    assert one.item_ids != two.item_ids and one.version == two.version
    # what another worker loads from the collection's payloads (rows included) has the same version
    points = IndexedPoints(one.collection, one.item_ids, [dict(p) for p in one.payloads], one.text_vectors, None)
    assert all(ROW_KEY in p for p in points.payloads)
    assert CatalogSnapshot.from_points(points).version == one.version


def test_a_duplicate_id_in_one_batch_counts_once() -> None:
    base = _snap(_items(3))
    twice, _, _ = apply_changes(base, [_change(Item("N", "first")), _change(Item("N", "second"))], [])
    once, _, _ = apply_changes(base, [_change(Item("N", "second"))], [])
    assert twice.version == once.version and twice.digest == content_digest(twice.items)
