"""The shared profile verbaliser, field inference, manifest section and the numpy projection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.profiles import (
    NO_PROFILE,
    ProfileGolden,
    ProfileSpec,
    infer_fields,
    profile_sentence,
)
from service.core.seqrec import load_profile_projection, project_profiles


def test_sentence_does_not_depend_on_field_order() -> None:
    a = {"age": 31, "gender": "F", "occupation": "nurse", "country": "DE", "favorite_category": "hair care"}
    b = dict(reversed(list(a.items())))
    assert list(a) != list(b)
    assert profile_sentence(a) == profile_sentence(b)
    assert profile_sentence(a) == (
        "A 31-year-old woman, who works as a nurse. Country: DE. Favorite category: hair care."
    )


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["age", "gender", "occupation", "zip", "country", "tier", "member"]),
        st.one_of(st.integers(0, 99), st.text(max_size=8), st.booleans(), st.none()),
        max_size=7,
    )
)
def test_sentence_is_order_free_and_never_empty(profile: dict[str, object]) -> None:
    reordered = dict(sorted(profile.items(), key=lambda kv: kv[0], reverse=True))
    s = profile_sentence(profile)
    assert s == profile_sentence(reordered)
    assert s.endswith(".") and s.strip()


def test_integer_age_as_float_gives_the_same_sentence() -> None:
    assert profile_sentence({"age": 24, "gender": "M"}) == profile_sentence({"age": 24.0, "gender": "M"})
    assert profile_sentence({"age": None}) == NO_PROFILE


def test_infer_fields_types_in_first_appearance_order() -> None:
    rows: list[dict[str, Any]] = [
        {"user_id": "u1", "age": 24, "gender": "M", "zip": "85711"},
        {"user_id": "u2", "age": 31.5, "gender": None, "member": True, "zip": 12345},
        {"user_id": "u3", "tags": ["a"], "empty": None},
    ]
    assert infer_fields(rows) == {
        "age": "number",
        "gender": "string",
        "zip": "string",  # mixed string / number -> accepted as text
        "member": "boolean",
        "tags": "string",
        "empty": "string",
    }


def _spec(**kw: object) -> ProfileSpec:
    values: dict[str, object] = {
        "dim": 8,
        "projection": "seqrec/profile_projection.npz",
        "user_ids": "profiles/user_ids.json",
        "vectors": "profiles/vectors.npy",
        "fields": {"age": "number", "gender": "string"},
        "golden": [ProfileGolden({"age": 24, "gender": "F"}, "A 24-year-old woman.")],
    }
    values.update(kw)
    return ProfileSpec(**values)  # type: ignore[arg-type]


def test_spec_round_trips_and_checks_its_golden_sentences() -> None:
    spec = _spec()
    back = ProfileSpec.from_dict(spec.to_dict())
    assert back == spec
    back.check_golden()
    drifted = _spec(golden=[ProfileGolden({"age": 24, "gender": "F"}, "A young woman.")])
    with pytest.raises(ValueError, match="verbaliser changed"):
        drifted.check_golden()
    with pytest.raises(ValueError, match="unknown field types"):
        ProfileSpec.from_dict({**spec.to_dict(), "fields": {"age": "date"}})
    with pytest.raises(ValueError, match="malformed profile"):
        ProfileSpec.from_dict({"dim": 8})


def test_numpy_projection_equals_the_torch_linear(tmp_path: Path) -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 5)
    x = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    w = lin.weight.detach().numpy().T  # [P, D]
    b = lin.bias.detach().numpy()
    with torch.no_grad():
        ref = lin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(project_profiles(x, w, b), ref, atol=1e-6)
    np.testing.assert_allclose(project_profiles(x[0], w, b), ref[0], atol=1e-6)
    with pytest.raises(ValueError, match="profile vectors must be"):
        project_profiles(x[:, :4], w, b)
    path = tmp_path / "p.npz"
    np.savez(path, W=w, b=b, mean=x.mean(axis=0))
    w2, b2, mean = load_profile_projection(path)
    np.testing.assert_array_equal(w2, w)
    np.testing.assert_array_equal(b2, b)
    assert mean.shape == (8,)
    np.savez(path, W=w, b=b)
    with pytest.raises(ValueError, match="missing"):
        load_profile_projection(path)
