"""User profile vectors for the build: verbalise every ``users.jsonl`` row, embed the sentences.

The sentences come from the shared verbaliser (``service.core.profiles.profile_sentence``) and are
embedded by the same text encoder as the items (the torch reference model here; the service's ONNX
export of it online, held to the export's parity gate). Outputs:

* ``train`` [U_seq, P]: one row per ``dataset.sequences`` entry (= ``split.train`` / ``EvalCase.user``
  order), ``NO_PROFILE``'s vector for users without a row: the input of ``fit_seqrec(profiles=...)``;
* ``user_ids`` / ``vectors`` [U, P]: the users that have a ``users.jsonl`` row, for serving requests
  that name a known ``user_id``.

Identical sentences are embedded once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.core.profiles import NO_PROFILE, ProfileGolden, infer_fields, profile_sentence
from training.config import EmbedItemsConfig
from training.data.loader import Dataset

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
EmbedTexts = Callable[[Sequence[str]], np.ndarray]  # texts -> [N, P] unit vectors
N_GOLDEN = 3


@dataclass
class ProfileInputs:
    train: F32  # [U_seq, P], row per dataset.sequences entry
    user_ids: list[str]  # users with a users.jsonl row, in file order
    vectors: F32  # [U, P], row per user_ids entry
    fields: dict[str, str]  # profile field -> JSON type ("number" | "string" | "boolean")
    coverage: float  # share of sequence users with a real profile
    golden: list[ProfileGolden]

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])


def profile_inputs(dataset: Dataset, embed: EmbedTexts) -> ProfileInputs:
    """Sentences of every profile, embedded with ``embed`` (one call, unique sentences only)."""
    if dataset.users is None:
        raise ValueError(
            f"dataset {dataset.name!r} has no users.jsonl, but seqrec.use_profile is set: "
            "add users.jsonl to the dataset folder or set seqrec.use_profile: false"
        )
    users = dataset.users
    user_ids = list(users)
    user_sentences = [profile_sentence(users[u]) for u in user_ids]
    seq_sentences = [profile_sentence(users.get(s.user_id)) for s in dataset.sequences]
    unique = sorted(set(user_sentences) | set(seq_sentences))
    row = {s: i for i, s in enumerate(unique)}
    t0 = time.perf_counter()
    vectors = np.asarray(embed(unique), dtype=np.float32)  # [S, P]
    if vectors.shape[0] != len(unique) or vectors.ndim != 2:
        raise ValueError(f"embedding {len(unique)} profile sentences gave shape {vectors.shape}")
    logger.info(
        "profiles: %d users with a profile, %d distinct sentences embedded in %.1fs",
        len(user_ids),
        len(unique),
        time.perf_counter() - t0,
    )
    train = vectors[[row[s] for s in seq_sentences]]  # [U_seq, P]
    per_user = vectors[[row[s] for s in user_sentences]] if user_ids else np.zeros((0, vectors.shape[1]), np.float32)
    covered = sum(s != NO_PROFILE for s in seq_sentences) / max(len(seq_sentences), 1)
    golden = [ProfileGolden(profile=dict(users[u]), sentence=s) for u, s in zip(user_ids, user_sentences, strict=True)]
    return ProfileInputs(
        train=train,
        user_ids=user_ids,
        vectors=per_user,
        fields=infer_fields(users.values()),
        coverage=round(covered, 4),
        golden=golden[:N_GOLDEN],
    )


def torch_embedder(cfg: EmbedItemsConfig, model_dir: Path | None = None) -> EmbedTexts:
    """Texts -> unit vectors with the torch reference encoder (what ``embed_items`` uses for items)."""

    def embed(texts: Sequence[str]) -> np.ndarray:
        from training.encoder.embed import embed_texts

        return embed_texts(texts, cfg, model_dir)  # [N, P]

    return embed
