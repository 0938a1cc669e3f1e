from __future__ import annotations

from pathlib import Path

import pytest

from training.config import DemoConfig
from training.data.demo import generate_demo
from training.data.loader import load_dataset
from training.data.profiles import NO_PROFILE, coverage, profile_sentence, profile_sentences


def test_movielens_profile_becomes_one_sentence() -> None:
    s = profile_sentence({"age": 24, "gender": "M", "occupation": "technician", "zip": "85711"})
    assert s == "A 24-year-old man, who works as a technician, living in zip code area 85711."
    assert profile_sentence({"age": 53, "gender": "F", "occupation": "other"}).startswith("A 53-year-old woman")
    assert "occupation 'none'" in profile_sentence({"gender": "F", "occupation": "none"})


def test_unknown_fields_are_kept_and_empty_profiles_say_so() -> None:
    s = profile_sentence({"age": 30, "country": "IN"})
    assert s.startswith("A 30-year-old person.") and "Country: IN." in s
    assert profile_sentence(None) == NO_PROFILE
    assert profile_sentence({}) == NO_PROFILE
    assert profile_sentence({"age": None, "gender": ""}) == NO_PROFILE


def test_profile_sentences_follow_sequence_order(tmp_path: Path) -> None:
    data = generate_demo(tmp_path / "demo", DemoConfig(n_items=40, n_users=25, seed=0))
    ds = load_dataset(data)
    sentences = profile_sentences(ds)
    assert len(sentences) == ds.n_users
    assert ds.users is not None
    first = ds.users[ds.sequences[0].user_id]
    assert sentences[0] == profile_sentence(first)
    assert coverage(ds, sentences) == 1.0
    ds.users = None
    with pytest.raises(ValueError, match=r"no users\.jsonl"):
        profile_sentences(ds)
