"""User profiles (``users.jsonl``) verbalised as one sentence each, for training.

The verbaliser itself lives in ``service/core/profiles.py`` (:func:`profile_sentence`): the service
calls the same function on a profile sent to ``POST /recommend``, so training and serving cannot
drift apart. This module adds the dataset-level helpers the training jobs need.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.core.profiles import NO_PROFILE, profile_sentence
from training.data.loader import Dataset

__all__ = ["NO_PROFILE", "coverage", "profile_sentence", "profile_sentences"]


def profile_sentences(dataset: Dataset) -> list[str]:
    """Sentence per user in ``dataset.sequences`` order (the user index of ``EvalCase.user``).

    Users without a ``users.jsonl`` row get ``NO_PROFILE``. Raises ValueError when the dataset has no
    ``users.jsonl``.
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
