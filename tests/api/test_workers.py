"""A writer app and a reader app (embedded multi-process mode roles) in one process: the reader serves
what the writer publishes, and follows its item changes. Forwarding and process management are
tested on real processes in tests/integration/test_workers.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.encoding.fake import FakeEncoder
from service.main import create_app
from service.state import Components
from service.workers import Pointer, ProcessRole, read_snapshot
from tests.api.test_embed import assert_error
from tests.api.test_items import NEW, found, put, recommendable
from tests.api.test_recommend_generative import gen_artifacts  # noqa: F401  (module fixture)
from tests.conftest import TEXT_DIM, admin_headers


def _role(tmp_path: Path, index: int) -> ProcessRole:
    return ProcessRole(
        index=index,
        run_id="run-1",
        workers=2,
        socket_dir=tmp_path / "run",
        publish_dir=tmp_path / "data" / "published",
        poll_s=0.05,
        forward_timeout_s=5.0,
    )


def _start(make_settings: Callable[..., Any], tmp_path: Path, index: int, **overrides: Any) -> TestClient:
    settings = make_settings(data_dir=tmp_path / "data", **overrides)
    app = create_app(settings, components=Components(encoder=FakeEncoder(dim=TEXT_DIM)), role=_role(tmp_path, index))
    client = TestClient(app)
    client.__enter__()
    return client


def test_the_reader_serves_the_writers_snapshot_and_its_item_changes(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    writer = _start(make_settings, tmp_path, 0)
    reader = _start(make_settings, tmp_path, 1)
    try:
        assert reader.app.state.recsvc.store.snapshot.collection == writer.app.state.recsvc.store.snapshot.collection  # type: ignore[attr-defined]
        body = {"history": ["P0001", "P0002"], "k": 5}
        a, b = writer.post("/recommend", json=body), reader.post("/recommend", json=body)
        assert a.status_code == b.status_code == 200
        assert [i["item_id"] for i in a.json()["items"]] == [i["item_id"] for i in b.json()["items"]]
        assert a.json()["index_version"] == b.json()["index_version"]
        ready = reader.get("/readyz")
        assert ready.status_code == 200 and ready.json()["index_version"] == a.json()["index_version"]

        # nothing listens on the writer's socket here (TestClient apps): a forwarded admin call is a clear 503
        resp = reader.get("/admin/collections", headers=admin_headers())
        err = assert_error(resp, 503, "writer_unavailable")
        assert resp.headers["retry-after"] == "1" and err["details"]["reason"]

        assert put(writer, [NEW]).status_code == 200
        deadline = time.monotonic() + 1.0
        while not (found(reader, "NEW-1") and recommendable(reader, "NEW-1")):
            assert time.monotonic() < deadline, "the reader did not serve the upsert within a second"
            time.sleep(0.02)
    finally:
        reader.__exit__(None, None, None)
        writer.__exit__(None, None, None)


@pytest.mark.usefixtures("one_torch_thread")
def test_the_reader_serves_the_writers_semantic_ids(
    make_settings: Callable[..., Any],
    tmp_path: Path,
    gen_artifacts: Path,  # noqa: F811
) -> None:
    """Items upserted on the writer get sids there (same text: other collision digits); the reader
    serves the writer's table, not one it derived itself, and decodes the same recommendations."""
    writer = _start(make_settings, tmp_path, 0, artifacts_dir=gen_artifacts)
    reader = _start(make_settings, tmp_path, 1, artifacts_dir=gen_artifacts)
    try:
        assert put(writer, [NEW, {**NEW, "item_id": "NEW-2"}]).status_code == 200
        w, r = writer.app.state.recsvc, reader.app.state.recsvc  # type: ignore[attr-defined]
        deadline = time.monotonic() + 2.0
        while "NEW-2" not in r.store.snapshot.row_of:
            assert time.monotonic() < deadline, "the reader did not serve the upsert"
            time.sleep(0.02)
        ws, rs = w.store.snapshot, r.store.snapshot
        wcat = w.recommender.generative.catalog(ws.version, ws.item_ids, ws.text_vectors)
        rcat = r.recommender.generative.catalog(rs.version, rs.item_ids, rs.text_vectors)
        assert rcat.item_ids == wcat.item_ids
        np.testing.assert_array_equal(rcat.table.sids, wcat.table.sids)
        assert rcat.new_items == wcat.new_items == 2
        pointer = Pointer.read(tmp_path / "data" / "published")
        assert pointer is not None
        _, published = read_snapshot(tmp_path / "data" / "published", pointer)
        assert published is not None  # the writer published its table with the snapshot
        np.testing.assert_array_equal(published, wcat.table.sids)
        body = {"history": ["P0001", "NEW-1"], "k": 5, "mode": "generative"}
        a, b = writer.post("/recommend", json=body), reader.post("/recommend", json=body)
        assert a.status_code == b.status_code == 200, (a.text, b.text)
        assert [i["item_id"] for i in a.json()["items"]] == [i["item_id"] for i in b.json()["items"]]
    finally:
        reader.__exit__(None, None, None)
        writer.__exit__(None, None, None)
