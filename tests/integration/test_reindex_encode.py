"""Reindex encoding with several chunks in flight: every item keeps its own vector, a failing chunk
fails the job before the swap (the partial collection dropped, the old one still served), and the
job reports where its time went."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.core.items import item_text
from service.encoding.base import EncoderError
from service.encoding.fake import FakeEncoder
from service.main import create_app
from service.state import Components
from tests.api.test_admin import wait_job
from tests.conftest import TEXT_DIM, TinyArtifacts, make_catalog, write_jsonl
from tests.integration.test_service_reindex import reindex

pytestmark = pytest.mark.integration


class FailingEncoder(FakeEncoder):
    """The fake encoder, failing on any batch that holds a text with ``marker``."""

    def __init__(self, marker: str) -> None:
        super().__init__(dim=TEXT_DIM)
        self.marker = marker

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if any(self.marker in t for t in texts):
            raise EncoderError("encoder failed on purpose")
        return super().encode(texts)


def test_chunks_in_flight_keep_every_vector_in_place(
    make_client: Callable[..., TestClient], tiny_artifacts: TinyArtifacts, tmp_path: Path
) -> None:
    client = make_client(reindex_encode_inflight=3, batcher={"max_batch": 7})
    new = make_catalog(150, seed=5, prefix="N")
    catalog = write_jsonl(tmp_path / "catalog.jsonl", tiny_artifacts.catalog + new)
    job = wait_job(client, reindex(client, catalog), timeout=120)
    assert job["status"] == "succeeded", job
    assert job["stats"]["encoded"] == 150
    assert {"encoding", "indexing", "swapping alias"} <= set(job["stats"]["stage_s"])
    assert all(v >= 0 for v in job["stats"]["stage_s"].values())

    snap = client.app.state.recsvc.store.snapshot  # type: ignore[attr-defined]
    rows = [snap.row_of[r["item_id"]] for r in new]
    expected = FakeEncoder(dim=TEXT_DIM).encode([item_text(snap.items[r]) for r in rows])  # [150, T]
    np.testing.assert_allclose(snap.text_vectors[rows], expected, atol=1e-5)


def test_a_failing_chunk_fails_the_job_before_the_swap(
    make_settings: Callable[..., Any], tiny_artifacts: TinyArtifacts, tmp_path: Path
) -> None:
    settings = make_settings(reindex_encode_inflight=4, batcher={"max_batch": 5})
    app = create_app(settings, components=Components(encoder=FailingEncoder("poisoned")))
    new = make_catalog(60, seed=6, prefix="N")
    new[37]["title"] = "poisoned title"
    catalog = write_jsonl(tmp_path / "catalog.jsonl", tiny_artifacts.catalog + new)
    with TestClient(app) as client:
        state = client.app.state.recsvc  # type: ignore[attr-defined]
        before = state.store.index.current_collection()
        job = wait_job(client, reindex(client, catalog), timeout=120)
        assert job["status"] == "failed" and "failed on purpose" in job["error"], job
        assert state.store.index.current_collection() == before
        assert state.store.snapshot.collection == before
        assert state.store.index.collections() == [before]  # nothing left behind
        resp = client.post("/recommend", json={"history": ["P0001"]})
        assert resp.status_code == 200 and resp.json()["index_version"] == before
