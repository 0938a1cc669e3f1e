"""User profiles (``users.jsonl``) verbalised as one sentence each.

A profile row such as ``{"age": 24, "gender": "M", "occupation": "technician", "zip": "85711"}``
becomes ``"A 24-year-old man who works as a technician, living in zip code area 85711."``: the
text encoder that embeds item text embeds this sentence too, and the sequential model fuses the
vector (``training/models/seqrec.py``, ``ProfileFusion``). Fields other than the known ones are
written as ``"Key: value."`` so no information is dropped silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from training.data.loader import Dataset

_GENDER = {"m": "man", "male": "man", "f": "woman", "female": "woman"}
_KNOWN = ("age", "gender", "occupation", "zip")
NO_PROFILE = "A user with no profile."


def profile_sentence(profile: Mapping[str, Any] | None) -> str:
    """One English sentence describing a user profile (``NO_PROFILE`` when empty or missing)."""
    if not profile:
        return NO_PROFILE
    age = profile.get("age")
    gender_raw = profile.get("gender")
    gender = _GENDER.get(str(gender_raw).strip().lower(), str(gender_raw)) if gender_raw not in (None, "") else None
    who = "person" if gender is None else gender
    head = f"A {int(age)}-year-old {who}" if isinstance(age, int | float) and not isinstance(age, bool) else f"A {who}"
    parts = [head]
    occupation = profile.get("occupation")
    if occupation and str(occupation).strip().lower() not in ("none", "other"):
        parts.append(f"who works as a {str(occupation).strip()}")
    elif occupation:
        parts.append(f"with occupation '{str(occupation).strip()}'")
    zip_code = profile.get("zip")
    if zip_code:
        parts.append(f"living in zip code area {str(zip_code).strip()}")
    sentence = ", ".join(parts) + "."
    extra = [f"{k.replace('_', ' ').capitalize()}: {v}." for k, v in profile.items() if k not in _KNOWN and v]
    if sentence == "A person." and not extra:
        return NO_PROFILE
    return " ".join([sentence, *extra])


def profile_sentences(dataset: Dataset) -> list[str]:
    """Sentence per user in ``dataset.sequences`` order (the user index of ``EvalCase.user``).

    Raises ValueError when the dataset has no ``users.jsonl``.
    """
    if dataset.users is None:
        raise ValueError(f"dataset {dataset.name!r} has no users.jsonl: user profiles are not available")
    users = dataset.users
    return [profile_sentence(users.get(s.user_id)) for s in dataset.sequences]


def coverage(dataset: Dataset, sentences: Sequence[str]) -> float:
    """Share of users whose sentence carries a real profile."""
    if not sentences:
        return 0.0
    return sum(s != NO_PROFILE for s in sentences) / len(sentences)
