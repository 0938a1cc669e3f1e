"""POST /recommend dense mode with the artifact set's item -> next item transition prior."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.core.transitions import PriorShape, TransitionPrior
from tests.api.test_admin import wait_job
from tests.api.test_recommend import Reference
from tests.conftest import TinyArtifacts, admin_headers, make_catalog, write_jsonl
from tests.transition_prior import TRANSITIONS_FILE, with_transition_prior

LAST = "P0001"
WEIGHT = 2.0


@pytest.fixture(scope="module")
def plain(tiny_artifacts: TinyArtifacts) -> Reference:
    return Reference(tiny_artifacts)


@pytest.fixture(scope="module")
def lifted(plain: Reference) -> str:
    """The item the plain model ranks last after LAST: the prior's strong successor of LAST."""
    return plain.top([LAST], k=len(plain.ids), exclude={LAST})[-1]


@pytest.fixture(scope="module")
def prior_set(tiny_artifacts: TinyArtifacts, lifted: str, tmp_path_factory: pytest.TempPathFactory) -> TinyArtifacts:
    sequences = [[LAST, lifted]] * 30 + [["P0002", "P0003", "P0004"]] * 5
    return with_transition_prior(tiny_artifacts, tmp_path_factory.mktemp("prior"), sequences, weight=WEIGHT)


def post(client: TestClient, **body: Any) -> Any:
    resp = client.post("/recommend", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def ids_of(body: Any) -> list[str]:
    return [it["item_id"] for it in body["items"]]


def test_the_prior_lifts_the_strong_successor_of_the_last_item(
    make_client: Callable[..., TestClient], prior_set: TinyArtifacts, plain: Reference, lifted: str
) -> None:
    client = make_client(artifacts_dir=prior_set.artifacts_dir)
    history = ["P0007", LAST]
    body = post(client, history=history, k=10)
    assert body["ranking"] == "model+transition_prior"
    assert ids_of(body)[0] == lifted
    assert lifted not in plain.top(history, k=10, exclude=set(history))
    # Exactly the full-catalog ranking by dot + w * log p(j | last) (the pool covers the 48 items).
    reps = np.stack([plain.items[plain.row[h]] for h in history])  # [L, D]
    user = plain.runtime.user_vectors([reps])[0]  # [D]
    prior = TransitionPrior.load(prior_set.root / TRANSITIONS_FILE)
    scores = plain.items @ user + WEIGHT * prior.log_prob([plain.row[LAST]])[0]  # [N]
    order = [i for i in np.argsort(-scores, kind="stable") if plain.ids[i] not in history][:10]
    assert ids_of(body) == [plain.ids[i] for i in order]
    np.testing.assert_allclose([it["score"] for it in body["items"]], scores[order], atol=1e-4)

    # Filters hold for the successors too: excluding the lifted item's category drops it.
    own = set(next(r for r in prior_set.catalog if r["item_id"] == lifted)["categories"])
    others = sorted({c for r in prior_set.catalog for c in r["categories"]} - own)
    filtered = post(client, history=history, k=10, filters={"categories": others})
    assert filtered["ranking"] == "model+transition_prior" and ids_of(filtered)
    assert lifted not in ids_of(filtered)
    assert all(set(it["payload"]["categories"]) & set(others) for it in filtered["items"])
    # exclude_history: the successor is dropped when it is in the history.
    assert lifted not in ids_of(post(client, history=[lifted, LAST], k=10))


def test_a_new_last_item_or_the_switch_serves_the_plain_model(
    make_client: Callable[..., TestClient], prior_set: TinyArtifacts, plain: Reference, tmp_path: Path
) -> None:
    client = make_client(artifacts_dir=prior_set.artifacts_dir)
    body = post(client, history=[LAST, {"item": {"title": "rose perfume", "categories": ["Beauty"]}}], k=5)
    assert body["ranking"] == "model"
    off = make_client(  # a second app in the same test: its own embedded Qdrant folder
        artifacts_dir=prior_set.artifacts_dir,
        transition_prior=False,
        data_dir=tmp_path / "off",
        qdrant={"path": str(tmp_path / "off" / "qdrant")},
    )
    body = post(off, history=[LAST], k=10)
    assert body["ranking"] == "model"
    assert ids_of(body) == plain.top([LAST], k=10, exclude={LAST})


def test_a_prior_over_the_last_items_skips_a_new_item_given_by_text(
    make_client: Callable[..., TestClient],
    tiny_artifacts: TinyArtifacts,
    lifted: str,
    tmp_path: Path,
) -> None:
    """With ``last`` = 2 the prior conditions on the known items among the last two entries: a new
    item at the end leaves LAST as the context, whose strong successor still comes first."""
    sequences = [[LAST, lifted]] * 30 + [["P0002", "P0003", "P0004"]] * 5
    wide = with_transition_prior(
        tiny_artifacts, tmp_path, sequences, weight=WEIGHT, shape=PriorShape(last=2, last_decay=0.5)
    )
    client = make_client(artifacts_dir=wide.artifacts_dir)
    new = {"item": {"title": "rose perfume", "categories": ["Beauty"]}}
    body = post(client, history=[LAST, new], k=5)
    assert body["ranking"] == "model+transition_prior" and ids_of(body)[0] == lifted
    assert post(client, history=[new], k=5)["ranking"] == "model"  # no known item in the context


def test_a_set_without_the_prior_says_model(make_client: Callable[..., TestClient]) -> None:
    assert post(make_client(), history=[LAST], k=3)["ranking"] == "model"


def test_openapi_documents_ranking(make_client: Callable[..., TestClient]) -> None:
    schema = make_client().get("/openapi.json").json()
    ranking = schema["components"]["schemas"]["RecommendResponse"]["properties"]["ranking"]
    assert set(ranking["enum"]) == {"model", "model+transition_prior"}


def test_after_a_reindex_with_new_and_removed_items_the_prior_follows_the_ids(
    make_client: Callable[..., TestClient], prior_set: TinyArtifacts, lifted: str, tmp_path: Path
) -> None:
    """The prior is keyed by the artifact's item ids: a reindexed catalog (reordered, one item removed,
    new items the build never saw) keeps the lifted successor, and the new items get the zero-count
    (popularity-smoothed) prior: finite scores, ranked by their dot product."""
    removed = next(r["item_id"] for r in prior_set.catalog if r["item_id"] not in (LAST, lifted))
    rows = [r for r in reversed(prior_set.catalog) if r["item_id"] != removed] + make_catalog(3, seed=5, prefix="N")
    path = write_jsonl(tmp_path / "catalog" / "items.jsonl", rows)
    client = make_client(artifacts_dir=prior_set.artifacts_dir)
    resp = client.post("/admin/reindex", json={"catalog_path": str(path)}, headers=admin_headers())
    assert resp.status_code == 202, resp.text
    assert wait_job(client, resp.json()["job_id"])["status"] == "succeeded"
    body = post(client, history=[LAST], k=len(rows) - 1)
    assert body["ranking"] == "model+transition_prior"
    got = ids_of(body)
    assert got[0] == lifted and removed not in got and {"N0000", "N0001", "N0002"} <= set(got)
    assert all(np.isfinite(it["score"]) for it in body["items"])
