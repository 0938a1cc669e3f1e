"""POST /recommend with user profiles: a model trained with profiles (request profile, stored profile
of a user_id, default mean profile), validation (422), and a model trained without them (ignored)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.artifacts import ArtifactError, load_artifacts
from service.core.manifest import Manifest
from service.core.profiles import PROFILE_SECTION, ProfileSpec, profile_sentence
from service.encoding.fake import FakeEncoder
from service.recommender.dense import SeqRecRuntime
from service.recommender.profiles import ProfileRuntime
from service.schemas import ItemText
from tests.api.test_embed import assert_error
from tests.conftest import CATEGORIES, TEXT_DIM, TinyArtifacts, build_tiny_artifacts

OCCUPATIONS = ("student", "nurse", "artist", "engineer")
HISTORY = ["P0001", "P0005", "P0009"]


def user_rows(n_users: int = 120) -> list[dict[str, Any]]:
    """Profiles that carry the users' taste (user u shops in category u % 4, see tests/conftest.py);
    every 10th user has no row (trained with the NO_PROFILE sentence)."""
    rows = []
    for u in range(n_users):
        if u % 10 == 0:
            continue
        rows.append(
            {
                "user_id": f"u{u}",
                "age": 18 + (u * 7) % 50,
                "gender": "F" if u % 3 else "M",
                "occupation": OCCUPATIONS[u % 4],
                "favorite_category": CATEGORIES[u % 4].lower(),
                "member": u % 2 == 0,
            }
        )
    return rows


USERS = {r["user_id"]: {k: v for k, v in r.items() if k != "user_id"} for r in user_rows()}


@pytest.fixture(scope="module")
def profile_artifacts(tmp_path_factory: pytest.TempPathFactory) -> TinyArtifacts:
    return build_tiny_artifacts(
        tmp_path_factory.mktemp("tiny-profiles"), users=user_rows(), version="20260101-000000-profiles"
    )


class ProfileReference:
    """The dense recommender with profiles computed directly from the artifact files."""

    def __init__(self, tiny: TinyArtifacts) -> None:
        manifest = Manifest.read(tiny.root)
        assert manifest.seqrec is not None
        self.runtime = SeqRecRuntime.from_manifest(tiny.root, manifest.seqrec, device="cpu")
        self.profiles = ProfileRuntime.from_manifest(tiny.root, ProfileSpec.from_dict(manifest.extra[PROFILE_SECTION]))
        self.encoder = FakeEncoder(dim=TEXT_DIM)
        self.ids = [r["item_id"] for r in tiny.catalog]
        self.row = {iid: i for i, iid in enumerate(self.ids)}
        self.items = self.runtime.item_vectors(np.load(tiny.root / manifest.items.text_vectors))  # [N, D]

    def offset(self, profile: dict[str, Any]) -> np.ndarray:
        return self.profiles.offset(self.encoder.encode([profile_sentence(profile)])[0])  # [D]

    def new_item(self, fields: dict[str, Any]) -> np.ndarray:
        """Seqrec vector of an item given by text (the cold path: projected text only). -> [D]"""
        text = self.encoder.encode([ItemText(**fields).encoder_text()])  # [1, T]
        return self.runtime.item_vectors(text, np.zeros(1, dtype=bool))[0]

    def top(self, history: Sequence[str | np.ndarray], offset: np.ndarray, k: int) -> tuple[list[str], list[float]]:
        reps = np.stack([self.items[self.row[h]] if isinstance(h, str) else h for h in history])  # [L, D]
        user = self.runtime.user_vectors([reps], offset[None, :])[0]  # [D]
        scores = self.items @ user  # [N]
        seen = {h for h in history if isinstance(h, str)}
        order = [i for i in np.argsort(-scores, kind="stable") if self.ids[i] not in seen][:k]
        return [self.ids[i] for i in order], [float(scores[i]) for i in order]


@pytest.fixture(scope="module")
def ref(profile_artifacts: TinyArtifacts) -> ProfileReference:
    return ProfileReference(profile_artifacts)


@pytest.fixture
def client(make_client: Callable[..., TestClient], profile_artifacts: TinyArtifacts) -> TestClient:
    return make_client(artifacts_dir=profile_artifacts.artifacts_dir)


def post(client: TestClient, **body: Any) -> Any:
    resp = client.post("/recommend", json={"history": HISTORY, "k": 8, **body})
    assert resp.status_code == 200, resp.text
    return resp.json()


def ids_scores(body: Any) -> tuple[list[str], list[float]]:
    return [it["item_id"] for it in body["items"]], [it["score"] for it in body["items"]]


def test_the_build_recorded_the_profile_section(profile_artifacts: TinyArtifacts) -> None:
    manifest = Manifest.read(profile_artifacts.root)
    manifest.verify_files(profile_artifacts.root)
    spec = ProfileSpec.from_dict(manifest.extra[PROFILE_SECTION])
    assert spec.fields == {
        "age": "number",
        "gender": "string",
        "occupation": "string",
        "favorite_category": "string",
        "member": "boolean",
    }
    assert spec.n_users == len(USERS) and spec.coverage == pytest.approx(0.9)
    assert spec.dim == TEXT_DIM and spec.golden
    assert "test_default_profile" in manifest.metrics["seqrec"]


def test_request_profile_is_verbalised_embedded_and_projected(client: TestClient, ref: ProfileReference) -> None:
    profile = {"occupation": "nurse", "age": 31, "gender": "F", "favorite_category": "skin", "member": True}
    body = post(client, profile=profile)
    assert body["profile_source"] == "request"
    ids, scores = ids_scores(body)
    want_ids, want_scores = ref.top(HISTORY, ref.offset(profile), 8)
    assert ids == want_ids
    np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-4)


def test_profile_with_an_unseen_item_in_the_history(client: TestClient, ref: ProfileReference) -> None:
    new = {"title": "Lavender night cream", "brand": "Calm", "categories": ["Skin"]}
    profile = {"age": 45, "occupation": "engineer", "favorite_category": "hair"}
    resp = client.post("/recommend", json={"history": ["P0002", {"item": new}, "P0006"], "k": 6, "profile": profile})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["profile_source"] == "request"
    want_ids, want_scores = ref.top(["P0002", ref.new_item(new), "P0006"], ref.offset(profile), 6)
    assert ids_scores(body)[0] == want_ids
    np.testing.assert_allclose(ids_scores(body)[1], want_scores, rtol=1e-4, atol=1e-4)


def test_no_profile_serves_the_mean_profile(client: TestClient, ref: ProfileReference) -> None:
    body = post(client)
    assert body["profile_source"] == "default"
    ids, scores = ids_scores(body)
    want_ids, want_scores = ref.top(HISTORY, ref.profiles.default_offset, 8)
    assert ids == want_ids
    np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-4)
    # an empty profile (or one with only nulls) carries no information: the same
    for empty in ({}, {"age": None}):
        again = post(client, profile=empty)
        assert again["profile_source"] == "default" and again["items"] == body["items"]
    # and a real profile changes the scores
    _, other = ids_scores(post(client, profile={"age": 60, "occupation": "artist", "favorite_category": "nails"}))
    assert not np.allclose(other, scores)


def test_user_id_brings_the_stored_profile(client: TestClient) -> None:
    stored = post(client, user_id="u7")
    assert stored["profile_source"] == "user"
    sent = post(client, profile=USERS["u7"])
    assert sent["profile_source"] == "request"
    # built with the same encoder and verbaliser: the stored vector is the one the service computes
    assert ids_scores(stored)[0] == ids_scores(sent)[0]
    np.testing.assert_allclose(ids_scores(stored)[1], ids_scores(sent)[1], rtol=1e-5, atol=1e-5)
    assert post(client, user_id="u10")["profile_source"] == "default"  # no users.jsonl row
    assert post(client, user_id="someone-new")["profile_source"] == "default"
    both = post(client, user_id="u7", profile={"age": 60, "occupation": "artist"})
    assert both["profile_source"] == "request"  # the request's profile wins
    assert both["items"] != stored["items"]


def test_different_profiles_are_cached_apart(client: TestClient) -> None:
    a = post(client, profile={"age": 20, "occupation": "student"})
    b = post(client, profile={"age": 60, "occupation": "engineer"})
    assert a["cached"] is False and b["cached"] is False
    again = post(client, profile={"age": 20, "occupation": "student"})
    assert again["cached"] is True and again["profile_source"] == "request" and again["items"] == a["items"]


INVALID_PROFILES: list[tuple[dict[str, Any], str, str]] = [
    ({"shoe_size": 42}, "invalid_profile", "unknown profile field"),
    ({"age": "thirty"}, "invalid_profile", "'age' (expected a number): Input should be a valid number"),
    ({"member": "yes"}, "invalid_profile", "'member' (expected a boolean)"),
    ({"user_id": "u7"}, "invalid_profile", "unknown profile field"),
    ({"bad key": 1}, "invalid_request", "profile"),
    ({"age": [24]}, "invalid_request", "profile"),
    ({f"f{i}": 1 for i in range(65)}, "invalid_request", "profile"),
    ({"occupation": "x" * 257}, "invalid_request", "profile"),
]


def test_invalid_profiles_are_422(client: TestClient) -> None:
    for profile, code, match in INVALID_PROFILES:  # one app for all cases: each start builds an index
        resp = client.post("/recommend", json={"history": HISTORY, "profile": profile})
        assert_error(resp, 422, code)
        assert match in resp.json()["error"]["message"], (profile, resp.json())


def test_model_without_profiles_ignores_them(make_client: Callable[..., TestClient]) -> None:
    client = make_client()  # the tiny set of tests/conftest.py: trained without profiles
    plain = post(client)
    assert plain["profile_source"] == "none"
    with_profile = post(client, profile={"age": 24, "occupation": "student", "anything": "goes"})
    assert with_profile["profile_source"] == "ignored"
    assert with_profile["items"] == plain["items"]
    assert post(client, user_id="u7")["profile_source"] == "ignored"
    # the shape is still checked
    assert_error(client.post("/recommend", json={"history": HISTORY, "profile": {"age": [1]}}), 422, "invalid_request")


def test_openapi_documents_profile_and_profile_source(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "profile" in schema["RecommendRequest"]["properties"]
    assert "user_id" in schema["RecommendRequest"]["properties"]
    assert "profile_source" in schema["RecommendResponse"]["properties"]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda p: p.update(dim=TEXT_DIM + 1), "input dim"),
        (lambda p: p["golden"][0].update(sentence="Someone."), "verbaliser changed"),
        (lambda p: p["fields"].update(age="date"), "unknown field types"),
    ],
)
def test_a_mismatched_profile_section_is_refused_at_start(
    profile_artifacts: TinyArtifacts, tmp_path: Path, edit: Callable[[dict[str, Any]], None], match: str
) -> None:
    root = tmp_path / profile_artifacts.root.name
    shutil.copytree(profile_artifacts.root, root)
    manifest = Manifest.read(root)
    edit(manifest.extra[PROFILE_SECTION])
    manifest.write(root)
    with pytest.raises(ArtifactError, match=match):
        load_artifacts(root, FakeEncoder(dim=TEXT_DIM), variant="fp32", device="cpu")


def test_hybrid_uses_the_profile_and_generative_ignores_it(
    make_client: Callable[..., TestClient], profile_artifacts: TinyArtifacts, tmp_path: Path
) -> None:
    import torch

    from tests.api.test_recommend_generative import add_generative

    base = tmp_path / "gen-profiles"
    shutil.copytree(profile_artifacts.artifacts_dir, base)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        add_generative(base / profile_artifacts.version)
    finally:
        torch.set_num_threads(before)
    client = make_client(artifacts_dir=base)
    profile = {"age": 52, "occupation": "artist", "favorite_category": "nails"}
    hybrid = post(client, mode="hybrid", profile=profile)
    assert hybrid["profile_source"] == "request" and hybrid["items"]
    assert post(client, mode="hybrid")["profile_source"] == "default"
    assert post(client, mode="hybrid", user_id="u7")["profile_source"] == "user"
    generative = post(client, mode="generative", profile=profile)
    assert generative["profile_source"] == "ignored"
    assert generative["items"] == post(client, mode="generative")["items"]


def test_eval_profiles_through_the_serving_path_matches_the_build(profile_artifacts: TinyArtifacts) -> None:
    """recsvc-train eval-profiles scores test cases as the service does; on whole histories that is
    what the build measured in torch (own profiles / the mean profile)."""
    from training.config import EvalProfilesConfig
    from training.jobs.eval_profiles import eval_profiles, markdown_table

    cfg = EvalProfilesConfig(
        artifacts=str(profile_artifacts.root),
        data=str(profile_artifacts.artifacts_dir.parent / "data"),
        history_lengths=[1, 0],
    )
    result = eval_profiles(cfg)
    rows = {(r["history"], r["variant"]): r for r in result["rows"]}
    assert set(rows) == {(1, "own profile"), (1, "mean profile"), ("all", "own profile"), ("all", "mean profile")}
    metrics = Manifest.read(profile_artifacts.root).metrics["seqrec"]
    # Every user with the mean profile: the same input in both paths.
    for m in ("recall@5", "recall@10", "ndcg@5", "ndcg@10"):
        assert rows[("all", "mean profile")][m] == pytest.approx(metrics["test_default_profile"][m], abs=1e-3), m
    # Own profiles: the build gave the 10% of users without a users.jsonl row the NO_PROFILE sentence,
    # the service gives them (no stored profile) the mean profile, so only those cases may differ.
    assert rows[("all", "own profile")]["recall@10"] == pytest.approx(metrics["test"]["recall@10"], abs=0.1)
    assert result["n_cases"] > 0 and result["with_profile_row"] < result["n_cases"]  # every 10th user has no row
    assert "| last 1 | own profile |" in markdown_table(result)


def test_profile_files_must_be_listed_in_the_manifest(profile_artifacts: TinyArtifacts) -> None:
    from service.core.manifest import ManifestError
    from service.features import FEATURES, feature_paths

    manifest = Manifest.read(profile_artifacts.root)
    assert "profiles/vectors.npy" in feature_paths(FEATURES, manifest)
    del manifest.files["profiles/vectors.npy"]
    manifest.verify_files(profile_artifacts.root)  # the core files alone are whole
    with pytest.raises(ManifestError, match=r"references profiles/vectors\.npy"):
        manifest.verify_files(profile_artifacts.root, feature_paths(FEATURES, manifest))
