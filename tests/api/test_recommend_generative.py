"""POST /recommend with mode=generative and mode=hybrid on an artifact set that has
semantic IDs and a (randomly initialised, tiny) genrec model: results equal the beam
search run directly on the artifact files; filters and history exclusion hold."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.core.manifest import Manifest
from service.core.sid import SidError, load_semantic_ids
from service.core.transitions import TransitionPrior
from service.recommender.generative import GenerativeRuntime
from service.semantic_ids.decoder import item_id_embeddings
from tests.conftest import TinyArtifacts
from tests.transition_prior import with_transition_prior
from training.config import GenRecConfig, SemanticIdConfig
from training.models.genrec import build_genrec
from training.semantic_ids.build import build_semantic_ids

pytestmark = pytest.mark.usefixtures("one_torch_thread")


GEN_CFG = GenRecConfig(
    d_model=32, d_ff=64, n_heads=2, d_kv=16, max_items=6, beam=12, history_input="tokens", item_id_input=False
)
# Two served models: TIGER's layout (one encoder position per sid token), and the per-item input
# with item-ID vectors.
GEN_CFGS = {
    "tokens": GEN_CFG,
    "items+ids": replace(GEN_CFG, history_input="items", item_id_input=True),
}


def add_generative(root: Path, cfg: GenRecConfig = GEN_CFG, prior_weight: float = 0.0) -> None:
    """Give an artifact set semantic IDs and a genrec model (what the build's optional stages write)."""
    manifest = Manifest.read(root)
    vectors = np.load(root / manifest.items.text_vectors)
    sid_cfg = SemanticIdConfig(n_levels=2, codebook_size=8, hidden=[16], latent_dim=8, epochs=10, batch_size=64)
    sid = build_semantic_ids(vectors, sid_cfg, root)
    model = build_genrec(sid.spec.layout, cfg, seed=0, n_items=len(sid.table))
    model.save_pretrained(str(root / "genrec"))
    manifest.extra["semantic_ids"] = sid.spec.to_dict()
    manifest.extra["genrec"] = {"dir": "genrec", "max_items": GEN_CFG.max_items, "beam": GEN_CFG.beam}
    if prior_weight:
        manifest.extra["genrec"]["prior_weight"] = prior_weight
    manifest.record_files(root)
    manifest.write(root)


@pytest.fixture(scope="module", params=sorted(GEN_CFGS))
def gen_artifacts(
    tiny_artifacts: TinyArtifacts, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Path:
    base = tmp_path_factory.mktemp("genrec-artifacts")
    root = base / tiny_artifacts.version
    shutil.copytree(tiny_artifacts.root, root)
    add_generative(root, GEN_CFGS[request.param])
    (base / "LATEST").write_text(tiny_artifacts.version + "\n")
    return base


@pytest.fixture(scope="module")
def runtime(gen_artifacts: Path, tiny_artifacts: TinyArtifacts) -> GenerativeRuntime:
    root = gen_artifacts / tiny_artifacts.version
    manifest = Manifest.read(root)
    ids = json.loads((root / manifest.items.ids).read_text())
    return GenerativeRuntime.from_manifest(root, manifest, ids, "cpu")


def post(client: TestClient, **body: object) -> dict[str, Any]:
    resp = client.post("/recommend", json=body)
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def direct_decode(
    runtime: GenerativeRuntime,
    gen_artifacts: Path,
    tiny: TinyArtifacts,
    history: list[str],
    k: int,
) -> tuple[list[str], list[float]]:
    """The beam search run straight on the artifact files (history excluded): (item ids, scores)."""
    ids = [r["item_id"] for r in tiny.catalog]
    vectors = np.load(gen_artifacts / tiny.version / "items" / "text_vectors.npy")
    cat = runtime.catalog("direct", ids, vectors)
    allowed = np.ones((1, len(ids)), dtype=bool)
    allowed[0, [ids.index(h) for h in history]] = False
    hist = np.stack([cat.tokens[ids.index(h)] for h in history])
    rows, scores = runtime.decode([hist], cat, k, allowed)
    kept = rows[0] >= 0
    return [ids[r] for r in rows[0][kept]], scores[0][kept].tolist()


def test_generative_equals_direct_beam_search(
    make_client: Callable[..., TestClient],
    gen_artifacts: Path,
    runtime: GenerativeRuntime,
    tiny_artifacts: TinyArtifacts,
) -> None:
    client = make_client(artifacts_dir=gen_artifacts)
    history = ["P0001", "P0005", "P0009"]
    body = post(client, history=history, k=7, mode="generative")
    items = body["items"]
    assert isinstance(items, list) and body["mode"] == "generative"
    got = [it["item_id"] for it in items]
    # the same decode straight from the artifact files
    want, scores = direct_decode(runtime, gen_artifacts, tiny_artifacts, history, 7)
    assert got == want
    assert [it["score"] for it in items] == pytest.approx(scores, abs=1e-5)
    assert [it["rank"] for it in items] == list(range(1, 8))
    assert not set(got) & set(history)


def test_user_id_does_not_change_the_generative_decode(
    make_client: Callable[..., TestClient],
    gen_artifacts: Path,
    runtime: GenerativeRuntime,
    tiny_artifacts: TinyArtifacts,
) -> None:
    client = make_client(artifacts_dir=gen_artifacts)
    history = ["P0002", "P0007"]
    scores = {}
    for user in ("U000001", "U000002", None):
        body = post(client, history=history, k=5, mode="generative", **({"user_id": user} if user else {}))
        want, scores[user] = direct_decode(runtime, gen_artifacts, tiny_artifacts, history, 5)
        assert [it["item_id"] for it in body["items"]] == want
        assert [it["score"] for it in body["items"]] == pytest.approx(scores[user], abs=1e-5)
    assert scores["U000001"] == scores["U000002"] == scores[None]  # no user token: user_id reaches profiles only


def test_runtime_refuses_a_model_that_does_not_fit_the_sid_vocabulary(
    gen_artifacts: Path, runtime: GenerativeRuntime, tiny_artifacts: TinyArtifacts
) -> None:
    root = gen_artifacts / tiny_artifacts.version
    spec, table, codec = load_semantic_ids(root, Manifest.read(root).extra["semantic_ids"])
    ids = [r["item_id"] for r in tiny_artifacts.catalog]
    model = copy.deepcopy(runtime.model)
    model.config.vocab_size = spec.layout.vocab_size + 3
    with pytest.raises(SidError, match="does not match the sid layout"):
        GenerativeRuntime(spec, table, codec, ids, model, device=runtime.device, beam=4, max_items=4)
    model.config.user_buckets = 2  # saved by a build from before user tokens were removed
    with pytest.raises(SidError, match="user_buckets, a removed option"):
        GenerativeRuntime(spec, table, codec, ids, model, device=runtime.device, beam=4, max_items=4)
    if item_id_embeddings(runtime.model):  # ID vectors for a different item table
        with pytest.raises(SidError, match="item-ID vectors"):
            GenerativeRuntime(
                spec,
                table.select(np.arange(10)),
                codec,
                ids[:10],
                runtime.model,
                device=runtime.device,
                beam=4,
                max_items=4,
            )


def test_generative_filters_apply_while_decoding(make_client: Callable[..., TestClient], gen_artifacts: Path) -> None:
    client = make_client(artifacts_dir=gen_artifacts)
    body = post(client, history=["P0001", "P0002"], k=20, mode="generative", filters={"categories": ["Hair"]})
    items = body["items"]
    assert isinstance(items, list)
    assert items and all("Hair" in it["payload"]["categories"] for it in items)
    # 12 Hair items in the 48-item catalog, none in the history -> all 12 (k=20 > beam: the beam widens to k)
    assert len(items) == 12
    body = post(client, history=["P0001"], k=5, mode="generative", exclude_history=False, filters={"price_max": 20})
    assert all(it["payload"]["price"] <= 20 for it in body["items"])


def test_hybrid_merges_and_rescores(make_client: Callable[..., TestClient], gen_artifacts: Path) -> None:
    client = make_client(artifacts_dir=gen_artifacts)
    history = ["P0003", "P0004", "P0010"]
    hybrid = post(client, history=history, k=10, mode="hybrid")
    dense = post(client, history=history, k=10, mode="dense")
    items = hybrid["items"]
    assert isinstance(items, list) and len(items) == 10 and hybrid["mode"] == "hybrid"
    scores = [it["score"] for it in items]
    assert scores == sorted(scores, reverse=True)
    assert not {it["item_id"] for it in items} & set(history)
    # rescored by the dense model: dense items keep their dense scores
    dense_scores = {it["item_id"]: it["score"] for it in dense["items"]}
    for it in items:
        if it["item_id"] in dense_scores:
            assert it["score"] == pytest.approx(dense_scores[it["item_id"]], abs=1e-4)


def test_history_item_given_by_text(make_client: Callable[..., TestClient], gen_artifacts: Path) -> None:
    client = make_client(artifacts_dir=gen_artifacts)
    body = post(client, history=["P0001", {"item": {"title": "fresh nail polish"}}], k=5, mode="generative")
    assert len(body["items"]) == 5


def test_new_items_get_sids_and_old_ones_keep_theirs(runtime: GenerativeRuntime, tiny_artifacts: TinyArtifacts) -> None:
    ids = [r["item_id"] for r in tiny_artifacts.catalog]
    vectors = np.load(tiny_artifacts.root / "items" / "text_vectors.npy")
    first = runtime.catalog("c1", ids, vectors)
    # reindex: item 0 removed, two new items (copies of existing texts: same codes -> next free digit)
    ids2 = [*ids[1:], "NEW1", "NEW2"]
    vec2 = np.concatenate([vectors[1:], vectors[[3, 3]]])
    second = runtime.catalog("c2", ids2, vec2)
    assert second.new_items == 2
    assert second.table.sids[: len(ids) - 1].tolist() == first.table.sids[1:].tolist()
    assert len({tuple(r) for r in second.table.sids.tolist()}) == len(ids2)
    nearest = runtime.codec.encode(vectors[[3]])[0].tolist()  # the codec's codes for item 3's text
    for row in (-2, -1):  # both new items get them, each with its own free collision digit
        assert second.table.sids[row, :-1].tolist() == nearest
    assert second.table.sids[-2, -1] != second.table.sids[-1, -1]
    if item_id_embeddings(runtime.model):  # encoder rows: sid tokens + the item's training-table row + 1
        assert first.tokens.shape == (len(ids), runtime.layout.depth + 1)
        assert first.tokens[:, -1].tolist() == list(range(1, len(ids) + 1))
        assert second.tokens[:, -1].tolist() == [*range(2, len(ids) + 1), 0, 0]  # new items: no ID
        assert runtime.history_item_tokens(vectors[:2])[:, -1].tolist() == [0, 0]  # items given by text: none
    else:
        assert first.tokens.shape == (len(ids), runtime.layout.depth)


def test_reindex_assigns_sids_to_new_items_before_the_swap(
    make_client: Callable[..., TestClient], gen_artifacts: Path, tiny_artifacts: TinyArtifacts, tmp_path: Path
) -> None:
    from tests.api.test_admin import wait_job
    from tests.conftest import admin_headers, write_jsonl

    client = make_client(artifacts_dir=gen_artifacts)
    catalog = [*tiny_artifacts.catalog[1:], {"item_id": "NEW1", "title": "Hair shampoo fresh", "categories": ["Hair"]}]
    path = write_jsonl(tmp_path / "catalog.jsonl", catalog)
    resp = client.post("/admin/reindex", json={"catalog_path": str(path)}, headers=admin_headers())
    assert resp.status_code == 202, resp.text
    job = wait_job(client, resp.json()["job_id"])
    assert job["status"] == "succeeded", job
    assert job["stats"]["sid_new_items"] == 1 and job["stats"]["sid_unique_prefix_share"] > 0
    # the removed item is never decoded; with a filter that leaves NEW1 plus history, NEW1 comes back
    body = post(client, history=["P0001"], k=40, mode="generative")
    got = [it["item_id"] for it in body["items"]]
    assert "P0000" not in got and body["index_version"] == job["collection"]
    assert len(got) == 40
    body = post(client, history=["P0002"], k=3, mode="generative", filters={"categories": ["Hair"], "price_max": 0.5})
    assert [it["item_id"] for it in body["items"]] == []  # NEW1 has no price: a price filter excludes it
    hair = post(client, history=["P0002"], k=20, mode="generative", filters={"categories": ["Hair"]})
    assert "NEW1" in [it["item_id"] for it in hair["items"]]


def test_prior_guided_generative_decoding(
    make_client: Callable[..., TestClient], tiny_artifacts: TinyArtifacts, tmp_path: Path
) -> None:
    """With a genrec prior weight and the artifact's transition prior, the beam is guided by
    log p(j | last item): a strongly counted successor comes first, the response says
    model+transition_prior, and the result equals a direct prior-guided decode."""
    sequences = [["P0001", "P0040"]] * 30 + [["P0002", "P0041"]] * 30
    tiny = with_transition_prior(tiny_artifacts, tmp_path, sequences)
    add_generative(tiny.root, GEN_CFGS["items+ids"], prior_weight=5.0)
    client = make_client(artifacts_dir=tiny.artifacts_dir)
    history = ["P0003", "P0001"]
    body = post(client, history=history, k=5, mode="generative")
    assert body["ranking"] == "model+transition_prior"
    got = [it["item_id"] for it in body["items"]]
    assert got[0] == "P0040"
    # The same decode straight from the artifact files, with the prior of the last history item.
    manifest = Manifest.read(tiny.root)
    ids = json.loads((tiny.root / manifest.items.ids).read_text())
    rt = GenerativeRuntime.from_manifest(tiny.root, manifest, ids, "cpu")
    assert rt.prior_weight == 5.0
    prior = TransitionPrior.load(tiny.root / "seqrec" / "transitions.npz")
    cat = rt.catalog("direct", ids, np.load(tiny.root / manifest.items.text_vectors))
    allowed = np.ones((1, len(ids)), dtype=bool)
    allowed[0, [ids.index(h) for h in history]] = False
    hist = np.stack([cat.tokens[ids.index(h)] for h in history])
    rows, scores = rt.decode([hist], cat, 5, allowed, prior.log_prob([ids.index("P0001")]))
    assert got == [ids[r] for r in rows[0]]
    assert [it["score"] for it in body["items"]] == pytest.approx(scores[0].tolist(), abs=1e-4)
    plain, _ = rt.decode([hist], cat, 5, allowed)
    assert [ids[r] for r in plain[0]] != got  # the prior changed the decode
    # A history given by text alone has no known context: the model decodes alone.
    text_only = post(client, history=[{"item": {"title": "fresh nail polish"}}], k=5, mode="generative")
    assert text_only["ranking"] == "model" and len(text_only["items"]) == 5
    with pytest.raises(SidError, match="prior_weight"):
        GenerativeRuntime(
            rt.spec, cat.table, rt.codec, ids, rt.model, device=rt.device, beam=4, max_items=4, prior_weight=-1.0
        )


def test_a_model_trained_next_to_the_prior_is_refused(tiny_artifacts: TinyArtifacts, tmp_path: Path) -> None:
    """prior_train_weight (training next to the transition prior) was removed for no gain: a model saved
    with it by an older build needs a decode this service no longer does, so loading it is a clear error."""
    root = tmp_path / tiny_artifacts.version
    shutil.copytree(tiny_artifacts.root, root)
    add_generative(root, GEN_CFGS["items+ids"])
    config = root / "genrec" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "prior_train_weight": 1.0}))
    manifest = Manifest.read(root)
    manifest.record_files(root)
    manifest.write(root)
    ids = json.loads((root / manifest.items.ids).read_text())
    with pytest.raises(SidError, match="prior_train_weight"):
        GenerativeRuntime.from_manifest(root, manifest, ids, "cpu")


def test_generative_decodes_run_torch_on_the_configured_threads(
    make_client: Callable[..., TestClient],
    gen_artifacts: Path,
    runtime: GenerativeRuntime,
    tiny_artifacts: TinyArtifacts,
    tmp_path: Path,
) -> None:
    import threading

    import torch

    for setting in (3, 0):
        qdrant = {"path": str(tmp_path / f"qdrant-{setting}")}
        client = make_client(artifacts_dir=gen_artifacts, torch_threads=setting, qdrant=qdrant)
        assert client.app.state.recsvc.recommender.generative.torch_threads == setting  # type: ignore[attr-defined]
        assert post(client, history=["P0001", "P0005"], mode="generative", k=3)["mode"] == "generative"
    # OpenMP keeps one count per thread, so each decode sets its own: a fresh worker thread (as
    # asyncio.to_thread uses) decodes on the configured count; 0 leaves torch's setting.
    seen: dict[int, int] = {}

    def decode_in_a_new_thread(n: int) -> None:
        torch.set_num_threads(2)
        runtime.torch_threads = n
        direct_decode(runtime, gen_artifacts, tiny_artifacts, ["P0001", "P0005"], 3)
        seen[n] = torch.get_num_threads()

    try:
        for n in (3, 0):
            worker = threading.Thread(target=decode_in_a_new_thread, args=(n,))
            worker.start()
            worker.join()
    finally:
        runtime.torch_threads = 0
    assert seen == {3: 3, 0: 2}


def test_hybrid_weights_add_the_prior_and_the_beam_bonus(
    make_client: Callable[..., TestClient], tiny_artifacts: TinyArtifacts, tmp_path: Path
) -> None:
    """RECSVC_HYBRID_PRIOR_WEIGHT brings the transition prior (and the last item's successors) into the
    hybrid score; RECSVC_HYBRID_GENERATIVE_WEIGHT the beam bonus. Both 0: the dense score alone."""
    sequences = [["P0001", "P0040"]] * 30 + [["P0002", "P0041"]] * 30
    tiny = with_transition_prior(tiny_artifacts, tmp_path, sequences)
    add_generative(tiny.root, GEN_CFGS["items+ids"])
    history = ["P0003", "P0001"]

    def client_with(name: str, **weights: float) -> TestClient:  # one embedded Qdrant folder per app
        return make_client(artifacts_dir=tiny.artifacts_dir, qdrant={"path": str(tmp_path / name)}, **weights)

    plain = post(client_with("q0"), history=history, k=5, mode="hybrid")
    assert plain["ranking"] == "model"
    with_prior = post(client_with("q1", hybrid_prior_weight=5.0), history=history, k=5, mode="hybrid")
    assert with_prior["ranking"] == "model+transition_prior"
    assert with_prior["items"][0]["item_id"] == "P0040"  # counted 30 times after P0001
    assert [it["item_id"] for it in plain["items"]] != [it["item_id"] for it in with_prior["items"]]
    client = client_with("q2", hybrid_generative_weight=1000.0)
    gen = post(client, history=history, k=5, mode="generative")
    hyb = post(client, history=history, k=5, mode="hybrid")
    assert hyb["ranking"] == "model"  # no prior-guided beam here (the genrec has no prior weight)
    # a bonus that large orders the beam's items first, in beam order
    assert [it["item_id"] for it in hyb["items"]][:3] == [it["item_id"] for it in gen["items"]][:3]
