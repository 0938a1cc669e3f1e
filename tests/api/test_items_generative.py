"""Items API in generative/hybrid mode: an upserted item gets a semantic ID from the saved codec
at once (usable in histories by id), and keeps it across later changes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.test_items import NEW, put
from tests.api.test_recommend_generative import gen_artifacts  # noqa: F401  (module fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_upserted_item_has_a_stable_semantic_id(
    make_client: Callable[..., TestClient],
    gen_artifacts: Path,  # noqa: F811
) -> None:
    client = make_client(artifacts_dir=gen_artifacts)
    for mode in ("generative", "hybrid"):
        resp = client.post("/recommend", json={"history": ["NEW-1"], "k": 5, "mode": mode})
        assert resp.status_code == 422, resp.text  # not in the catalog yet
    assert put(client, [NEW]).status_code == 200
    state = client.app.state.recsvc  # type: ignore[attr-defined]
    snap = state.store.snapshot
    gen = state.recommender.generative
    cat = gen.catalog(snap.version, snap.item_ids, snap.text_vectors)
    assert cat.item_ids == snap.item_ids  # the sid table follows the live snapshot
    sid = tuple(cat.table.sids[snap.row_of["NEW-1"]].tolist())
    for mode in ("generative", "hybrid"):
        resp = client.post("/recommend", json={"history": ["P0001", "NEW-1"], "k": 5, "mode": mode})
        assert resp.status_code == 200, resp.text
    assert put(client, [{**NEW, "item_id": "NEW-2"}]).status_code == 200
    snap = state.store.snapshot
    cat = gen.catalog(snap.version, snap.item_ids, snap.text_vectors)
    assert tuple(cat.table.sids[snap.row_of["NEW-1"]].tolist()) == sid  # stable, collision digit included
    assert tuple(cat.table.sids[snap.row_of["NEW-2"]].tolist()) != sid  # same text: another collision digit
