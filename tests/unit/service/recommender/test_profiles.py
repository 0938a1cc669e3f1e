"""ProfileRuntime: request profiles validated against the model's fields, projected in numpy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.core.profiles import ProfileGolden, ProfileSpec, profile_sentence
from service.core.seqrec import project_profiles
from service.errors import InvalidProfileError
from service.recommender.profiles import ProfileRuntime

P, D = 6, 4
FIELDS = {"age": "number", "gender": "string", "occupation": "string", "country": "string", "member": "boolean"}


def _runtime(tmp_path: Path, golden: list[ProfileGolden] | None = None) -> tuple[ProfileRuntime, dict[str, Any]]:
    rng = np.random.default_rng(0)
    arrays = {
        "W": rng.normal(size=(P, D)).astype(np.float32),
        "b": rng.normal(size=D).astype(np.float32),
        "mean": rng.normal(size=P).astype(np.float32),
        "users": rng.normal(size=(2, P)).astype(np.float32),
    }
    (tmp_path / "seqrec").mkdir()
    (tmp_path / "profiles").mkdir()
    np.savez(tmp_path / "seqrec" / "profile_projection.npz", W=arrays["W"], b=arrays["b"], mean=arrays["mean"])
    (tmp_path / "profiles" / "user_ids.json").write_text(json.dumps(["u1", "u2"]))
    np.save(tmp_path / "profiles" / "vectors.npy", arrays["users"])
    spec = ProfileSpec(
        dim=P,
        projection="seqrec/profile_projection.npz",
        user_ids="profiles/user_ids.json",
        vectors="profiles/vectors.npy",
        fields=FIELDS,
        golden=golden if golden is not None else [ProfileGolden({"age": 30}, "A 30-year-old person.")],
    )
    return ProfileRuntime.from_manifest(tmp_path, spec), arrays


def test_offsets_are_the_projection(tmp_path: Path) -> None:
    rt, a = _runtime(tmp_path)
    assert rt.dim == D and rt.fields == list(FIELDS)
    np.testing.assert_allclose(rt.default_offset, a["mean"] @ a["W"] + a["b"], rtol=1e-5)
    np.testing.assert_allclose(rt.user_offset("u2"), a["users"][1] @ a["W"] + a["b"], rtol=1e-5)  # type: ignore[arg-type]
    assert rt.user_offset("nobody") is None
    v = np.ones(P, dtype=np.float32)
    np.testing.assert_allclose(rt.offset(v), project_profiles(v, a["W"], a["b"]))


def test_valid_profile_is_verbalised_by_the_shared_function(tmp_path: Path) -> None:
    rt, _ = _runtime(tmp_path)
    profile = {"country": "DE", "occupation": "student", "age": 24, "gender": "F", "member": None}
    assert rt.validate(profile) == {"country": "DE", "occupation": "student", "age": 24, "gender": "F"}
    same = {"age": 24, "gender": "F", "occupation": "student", "country": "DE"}
    assert rt.sentence(profile) == profile_sentence(same)
    assert isinstance(rt.validate({"age": 24})["age"], int)  # not 24.0: "Age: 24." must match training
    assert rt.validate({"age": 24.5}) == {"age": 24.5}
    assert rt.validate({}) == {}


@pytest.mark.parametrize(
    ("profile", "match"),
    [
        ({"shoe_size": 42}, r"unknown profile field\(s\) 'shoe_size'"),
        ({"age": "24"}, r"invalid profile field 'age' \(expected a number\)"),
        ({"age": True}, r"invalid profile field 'age'"),
        ({"gender": 1}, r"invalid profile field 'gender' \(expected a string\)"),
        ({"member": "yes"}, r"invalid profile field 'member' \(expected a boolean\)"),
        ({"occupation": "x" * 300}, r"invalid profile field 'occupation'"),
    ],
)
def test_invalid_profiles_name_the_field(tmp_path: Path, profile: dict[str, Any], match: str) -> None:
    rt, _ = _runtime(tmp_path)
    with pytest.raises(InvalidProfileError, match=match) as info:
        rt.validate(profile)
    assert info.value.status_code == 422 and info.value.code == "invalid_profile"
    assert info.value.details["fields"] == FIELDS


def test_a_changed_verbaliser_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="verbaliser changed"):
        _runtime(tmp_path, golden=[ProfileGolden({"age": 30}, "Someone aged thirty.")])


def test_shapes_are_checked(tmp_path: Path) -> None:
    rt, a = _runtime(tmp_path)
    with pytest.raises(ValueError, match="profile vectors have shape"):
        ProfileRuntime(rt.spec, a["W"], a["b"], a["mean"], ["u1"], a["users"])
    with pytest.raises(ValueError, match="input dim"):
        ProfileRuntime(rt.spec, a["W"][:3], a["b"], a["mean"][:3], ["u1", "u2"], a["users"])


def test_embedded_sentences_are_kept_in_a_bounded_lru(tmp_path: Path) -> None:
    rt, _ = _runtime(tmp_path)
    rt.cache_size = 2
    v = [np.full(P, i, dtype=np.float32) for i in range(3)]
    assert rt.cached_vector("a") is None
    rt.remember("a", v[0])
    rt.remember("b", v[1])
    np.testing.assert_array_equal(rt.cached_vector("a"), v[0])  # "a" is now the newest
    rt.remember("c", v[2])  # evicts "b", the least recently used
    assert rt.cached_vector("b") is None
    np.testing.assert_array_equal(rt.cached_vector("c"), v[2])
    rt.cache_size = 0
    rt.remember("d", v[0])
    assert rt.cached_vector("d") is None
