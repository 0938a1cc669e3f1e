"""CatalogIndex on embedded Qdrant (a real local-mode store in tmp), and the exact searcher
checked against Qdrant's own filtered search."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qdrant_client import QdrantClient

from service.core.index import (
    ROW_KEY,
    VECTOR_SEQREC,
    VECTOR_TEXT,
    CatalogIndex,
    CatalogIndexError,
    ExactSearcher,
    SearchFilter,
    open_client,
    point_id,
)
from service.core.items import Item

CATS = ("hair", "skin", "nails", "tools")


def make_items(n: int, seed: int = 0) -> list[Item]:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        cats = tuple(sorted({CATS[int(c)] for c in rng.integers(0, len(CATS), size=int(rng.integers(1, 3)))}))
        price = None if i % 7 == 3 else float(rng.integers(1, 100))
        items.append(Item(item_id=f"it{i}", title=f"item {i}", categories=cats, price=price))
    return items


def unit(rows: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[QdrantClient]:
    c = open_client(None, str(tmp_path / "qdrant"))
    yield c
    c.close()


def test_point_id_is_stable_uuid() -> None:
    assert point_id("abc") == point_id("abc")
    assert point_id("abc") != point_id("abd")
    assert len(point_id("abc")) == 36


def test_build_swap_search_and_drop(client: QdrantClient) -> None:
    index = CatalogIndex(client, alias="items")
    items = make_items(60)
    text, seq = unit(60, 16, 1), np.random.default_rng(2).normal(size=(60, 8)).astype(np.float32)
    assert index.current_collection() is None
    assert index.next_collection_name() == "items_v1"
    v1 = index.build(items, text, seq, batch_size=16, metadata={"artifact_version": "a"})
    assert v1 == "items_v1"
    assert index.current_collection() is None  # build never touches the alias
    assert index.swap_alias(v1) is None
    assert index.current_collection() == v1
    assert index.count() == 60
    assert index.metadata()["artifact_version"] == "a"

    hits = index.search(VECTOR_TEXT, text[5], 3)
    assert hits[0].item_id == "it5"
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].payload[ROW_KEY] == 5 and hits[0].payload["title"] == "item 5"
    # dot product on seqrec: the best hit maximises the raw dot
    hits = index.search(VECTOR_SEQREC, seq[0], 1)
    assert hits[0].item_id == f"it{int(np.argmax(seq @ seq[0]))}"

    v2 = index.build(items[:30], text[:30], seq[:30])
    assert v2 == "items_v2"
    assert index.swap_alias(v2) == v1
    assert index.count() == 30
    with pytest.raises(CatalogIndexError, match="alias"):
        index.drop(v2)
    index.drop(v1)
    assert index.collections() == [v2]
    assert index.next_collection_name() == "items_v3"


def test_filters_are_applied_inside_the_query(client: QdrantClient) -> None:
    index = CatalogIndex(client)
    items = make_items(80)
    text = unit(80, 16, 3)
    index.swap_alias(index.build(items, text, None))
    flt = SearchFilter(categories=("hair",), price_min=10, price_max=50, exclude_ids=("it0", "it1", "it2"))
    hits = index.search(VECTOR_TEXT, text[0], 80, flt)
    by_id = {it.item_id: it for it in items}
    expected = {
        it.item_id
        for it in items
        if "hair" in it.categories
        and it.price is not None
        and 10 <= it.price <= 50
        and it.item_id not in flt.exclude_ids
    }
    assert {h.item_id for h in hits} == expected  # k large enough: every match, nothing else
    assert all("hair" in by_id[h.item_id].categories for h in hits)


def test_failed_build_leaves_no_partial_collection(client: QdrantClient) -> None:
    index = CatalogIndex(client)
    items = make_items(20)
    index.swap_alias(index.build(items, unit(20, 8, 0), None))

    def boom(done: int, total: int) -> None:
        if done >= 10:
            raise RuntimeError("disk full")

    with pytest.raises(CatalogIndexError, match="disk full"):
        index.build(items, unit(20, 8, 1), None, batch_size=5, on_batch=boom)
    assert index.collections() == ["items_v1"]
    assert index.current_collection() == "items_v1"


def test_build_rejects_bad_input(client: QdrantClient) -> None:
    index = CatalogIndex(client)
    items = make_items(4)
    with pytest.raises(CatalogIndexError, match="shape"):
        index.build(items, unit(3, 8, 0), None)
    with pytest.raises(CatalogIndexError, match="unique"):
        index.build([items[0], items[0]], unit(2, 8, 0), None)
    bad = unit(4, 8, 0)
    bad[1, 0] = np.nan
    with pytest.raises(CatalogIndexError, match="NaN"):
        index.build(items, bad, None)
    with pytest.raises(CatalogIndexError, match="empty"):
        index.build([], unit(0, 8, 0), None)
    assert index.collections() == []


def test_swap_to_missing_collection_is_refused(client: QdrantClient) -> None:
    index = CatalogIndex(client)
    with pytest.raises(CatalogIndexError, match="missing"):
        index.swap_alias("items_v9")


def test_alias_family_ignores_other_collections(client: QdrantClient) -> None:
    a, b = CatalogIndex(client, alias="items"), CatalogIndex(client, alias="other")
    a.swap_alias(a.build(make_items(5), unit(5, 8, 0), None))
    b.swap_alias(b.build(make_items(6), unit(6, 8, 1), None))
    assert a.collections() == ["items_v1"] and b.collections() == ["other_v1"]
    assert a.count() == 5 and b.count() == 6


def test_load_points_round_trips_payloads_and_vectors(client: QdrantClient) -> None:
    index = CatalogIndex(client)
    items = make_items(50)
    text, seq = unit(50, 16, 4), np.random.default_rng(5).normal(size=(50, 8)).astype(np.float32)
    index.swap_alias(index.build(items, text, seq, batch_size=7, metadata={"k": "v"}))
    pts = index.load_points(batch_size=9)
    assert pts.item_ids == [it.item_id for it in items]
    np.testing.assert_allclose(pts.text_vectors, text, atol=1e-6)
    assert pts.seqrec_vectors is not None
    np.testing.assert_allclose(pts.seqrec_vectors, seq, atol=1e-6)
    assert "price" not in pts.payloads[3]  # item 3 has no price: the payload has no key
    assert pts.payloads == [{**it.payload(), ROW_KEY: i} for i, it in enumerate(items)]
    assert pts.metadata["k"] == "v" and pts.metadata["count"] == 50


def test_concurrent_search_during_build(client: QdrantClient) -> None:
    """The lock lets searches interleave with a build's batches instead of failing."""
    index = CatalogIndex(client)
    items = make_items(40)
    text = unit(40, 8, 0)
    index.swap_alias(index.build(items, text, None))
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        while not stop.is_set():
            try:
                assert index.search(VECTOR_TEXT, text[1], 1)[0].item_id == "it1"
            except BaseException as exc:
                errors.append(exc)
                return

    t = threading.Thread(target=searcher)
    t.start()
    try:
        new = index.build(make_items(400, seed=1), unit(400, 8, 9), None, batch_size=20)
    finally:
        stop.set()
        t.join()
    assert not errors
    index.swap_alias(new)
    assert index.count() == 400


# ---------------------------------------------------------------- exact search vs Qdrant
@pytest.fixture(scope="module")
def reference() -> Iterator[tuple[CatalogIndex, ExactSearcher, list[Item], np.ndarray, np.ndarray]]:
    client = open_client(None, None)  # in-memory local mode
    index = CatalogIndex(client)
    items = make_items(150, seed=7)
    text, seq = unit(150, 12, 7), np.random.default_rng(8).normal(size=(150, 6)).astype(np.float32)
    index.swap_alias(index.build(items, text, seq))
    pts = index.load_points()
    searcher = ExactSearcher(pts.item_ids, pts.payloads, {VECTOR_TEXT: text, VECTOR_SEQREC: seq})
    yield index, searcher, items, text, seq
    client.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    q=st.integers(0, 149),
    vector=st.sampled_from([VECTOR_TEXT, VECTOR_SEQREC]),
    k=st.integers(1, 40),
    cats=st.lists(st.sampled_from((*CATS, "absent")), max_size=3, unique=True),
    lo=st.one_of(st.none(), st.integers(0, 100)),
    span=st.one_of(st.none(), st.integers(0, 100)),
    excluded=st.lists(st.integers(0, 149), max_size=10),
)
def test_exact_searcher_agrees_with_qdrant(
    reference: tuple[CatalogIndex, ExactSearcher, list[Item], np.ndarray, np.ndarray],
    q: int,
    vector: str,
    k: int,
    cats: list[str],
    lo: int | None,
    span: int | None,
    excluded: list[int],
) -> None:
    index, searcher, _, text, seq = reference
    hi = None if span is None else (lo or 0) + span
    flt = SearchFilter(
        categories=tuple(cats), price_min=lo, price_max=hi, exclude_ids=tuple(f"it{i}" for i in excluded)
    )
    query = (text if vector == VECTOR_TEXT else seq)[q]
    want = index.search(vector, query, k, flt)
    got = searcher.search(vector, query, k, flt)
    assert [h.item_id for h in got] == [h.item_id for h in want]
    np.testing.assert_allclose([h.score for h in got], [h.score for h in want], rtol=1e-4, atol=1e-5)
    assert [h.payload for h in got] == [h.payload for h in want]


def test_exact_searcher_validates_input() -> None:
    s = ExactSearcher(["a"], [{"item_id": "a"}], {VECTOR_TEXT: np.ones((1, 4), dtype=np.float32)})
    with pytest.raises(ValueError, match="dim"):
        s.search(VECTOR_TEXT, np.ones(3), 1)
    with pytest.raises(ValueError, match="no vectors"):
        s.search(VECTOR_SEQREC, np.ones(4), 1)
    assert s.search(VECTOR_TEXT, np.ones(4), 5, SearchFilter(exclude_ids=("a",))) == []


def _synchronous(client: QdrantClient, name: str) -> int:
    storage = client._client.collections[name].storage.storage  # type: ignore[attr-defined]  # the SQLite connection
    return int(storage.execute("PRAGMA synchronous").fetchone()[0])


def test_a_reopened_collection_gets_the_build_tuning_when_loaded(tmp_path: Path) -> None:
    """SQLite keeps WAL mode in the file but not synchronous=NORMAL: without tuning at load, writes into a
    collection served after a restart would fsync once per point (the items API writes one per item)."""
    items = make_items(30)
    first = open_client(None, str(tmp_path / "q"))
    name = CatalogIndex(first, alias="items").build(items, unit(30, 8, 1), None)
    assert _synchronous(first, name) == 1  # NORMAL, set by the build
    first.close()
    again = open_client(None, str(tmp_path / "q"))
    try:
        assert _synchronous(again, name) == 2  # FULL: SQLite's default for a fresh connection
        points = CatalogIndex(again, alias="items").load_points(name)
        assert points.item_ids == [it.item_id for it in items]
        assert _synchronous(again, name) == 1
    finally:
        again.close()
