"""User profiles on ``POST /recommend`` (numpy only): validate, verbalise, project.

A model trained with profiles (``SeqRec(profile_dim=P)``) adds ``profile_proj(vector)`` [D] to every
item representation of the history before the user tower. Serving does the same in three steps:

1. validate the request's ``profile`` against the fields the model was trained with
   (:class:`service.core.profiles.ProfileSpec`; a pydantic model built from them: unknown field or
   wrong JSON type -> 422 ``invalid_profile``);
2. verbalise it with the shared :func:`service.core.profiles.profile_sentence` and embed the sentence
   with the service's encoder (the caller does this: it owns the batcher);
3. project the vector with the exported ``W``, ``b`` (:func:`service.core.seqrec.project_profiles`).

A request naming a ``user_id`` whose profile was in the training data gets that user's stored vector
(embedded at build time); a request with neither gets the mean profile vector of the training users.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
    create_model,
)

from service.core.profiles import ProfileSpec, profile_sentence
from service.core.seqrec import load_profile_projection, project_profiles
from service.errors import InvalidProfileError

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
MAX_PROFILE_TEXT = 256  # characters of one string value
MAX_PROFILE_FIELDS = 64

FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
ProfileString = Annotated[str, StringConstraints(strict=True, max_length=MAX_PROFILE_TEXT)]
_FIELD_TYPES: dict[str, Any] = {
    # int before float: 3 stays 3 (the verbaliser writes "Household size: 3.", not "3.0.").
    "number": StrictInt | FiniteFloat | None,
    "string": ProfileString | None,
    "boolean": StrictBool | None,
}


def profile_model(fields: Mapping[str, str]) -> type[BaseModel]:
    """A pydantic model accepting exactly ``fields`` (name -> JSON type), each optional."""
    definitions: dict[str, Any] = {}
    for name, kind in fields.items():
        if kind not in _FIELD_TYPES:
            raise ValueError(f"profile field {name!r} has unknown type {kind!r}")
        definitions[name] = (_FIELD_TYPES[kind], None)
    model: type[BaseModel] = create_model("UserProfile", __config__=ConfigDict(extra="forbid"), **definitions)
    return model


class ProfileRuntime:
    """The served model's profile input: field schema, projection, stored and default profiles."""

    def __init__(
        self,
        spec: ProfileSpec,
        W: np.ndarray,
        b: np.ndarray,
        mean: np.ndarray,
        user_ids: list[str],
        user_vectors: np.ndarray,
        *,
        cache_size: int = 4096,
    ) -> None:
        if W.ndim != 2 or W.shape[0] != spec.dim:
            raise ValueError(f"profile projection W has shape {W.shape}, the manifest says input dim {spec.dim}")
        if user_vectors.shape != (len(user_ids), spec.dim):
            raise ValueError(f"profile vectors have shape {user_vectors.shape}, expected ({len(user_ids)}, {spec.dim})")
        self.spec = spec
        self.W = W.astype(np.float32, copy=False)  # [P, D]
        self.b = b.astype(np.float32, copy=False)  # [D]
        self.default_offset = project_profiles(mean, self.W, self.b)  # [D]
        self.user_row = {u: i for i, u in enumerate(user_ids)}
        # Stored profiles projected once: a known user costs a row lookup.
        self.user_offsets = project_profiles(user_vectors, self.W, self.b)  # [U, D]
        self._model = profile_model(spec.fields)
        # Sentence -> embedded vector [P], least recently used first. Profiles repeat (few ages x
        # occupations x ...), so most requests skip the encoder. Touched from the event loop only.
        self.cache_size = cache_size
        self._vectors: OrderedDict[str, F32] = OrderedDict()

    @classmethod
    def from_manifest(cls, root: Path, spec: ProfileSpec) -> ProfileRuntime:
        spec.check_golden()
        w, b, mean = load_profile_projection(root / spec.projection)
        user_ids = json.loads((root / spec.user_ids).read_text())
        if not isinstance(user_ids, list) or not all(isinstance(u, str) for u in user_ids):
            raise ValueError(f"{spec.user_ids} must be a JSON list of strings")
        vectors = np.load(root / spec.vectors, allow_pickle=False)
        runtime = cls(spec, w, b, mean, user_ids, vectors)
        logger.info(
            "profiles: input dim %d -> %d, fields %s, %d stored users",
            spec.dim,
            runtime.dim,
            ", ".join(spec.fields),
            len(user_ids),
        )
        return runtime

    @property
    def dim(self) -> int:
        """Width of the offsets (the seqrec hidden size)."""
        return int(self.W.shape[1])

    @property
    def fields(self) -> list[str]:
        return list(self.spec.fields)

    def validate(self, profile: Mapping[str, Any]) -> dict[str, Any]:
        """The profile as the model's fields (nulls dropped); :class:`InvalidProfileError` when it does not fit."""
        unknown = [k for k in profile if k not in self.spec.fields]
        if unknown:
            raise InvalidProfileError(
                f"unknown profile field(s) {', '.join(repr(k) for k in unknown)}: the served model was trained "
                f"with {', '.join(repr(k) for k in self.spec.fields) or 'no fields'}",
                {"unknown_fields": unknown, "fields": self.spec.fields},
            )
        try:
            parsed = self._model.model_validate(dict(profile))
        except ValidationError as exc:
            # loc[0] is the field; a union type (number = int | float) adds the member tried as loc[1].
            errors = [{"field": str(e["loc"][0]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
            # The last error of the first failing field is the widest (for a number: "a valid number").
            first = [e for e in errors if e["field"] == errors[0]["field"]][-1]
            expected = self.spec.fields[first["field"]]
            raise InvalidProfileError(
                f"invalid profile field {first['field']!r} (expected a {expected}): {first['msg']}",
                {"errors": errors, "fields": self.spec.fields},
            ) from exc
        return {k: v for k, v in parsed.model_dump().items() if v is not None and k in profile}

    def sentence(self, profile: Mapping[str, Any]) -> str:
        """Validated profile -> the sentence training wrote for the same row."""
        return profile_sentence(self.validate(profile))

    def cached_vector(self, sentence: str) -> F32 | None:
        """The embedded vector of ``sentence`` if it is in the LRU cache. -> [P] | None"""
        vector = self._vectors.get(sentence)
        if vector is not None:
            self._vectors.move_to_end(sentence)
        return vector

    def remember(self, sentence: str, vector: np.ndarray) -> None:
        """Keep the embedded vector [P] of ``sentence`` (evicting the least recently used)."""
        if self.cache_size <= 0:
            return
        self._vectors[sentence] = np.asarray(vector, dtype=np.float32)
        self._vectors.move_to_end(sentence)
        while len(self._vectors) > self.cache_size:
            self._vectors.popitem(last=False)

    def offset(self, vector: np.ndarray) -> F32:
        """Embedded profile sentence [P] -> offset added to every history item [D]."""
        return project_profiles(np.asarray(vector, dtype=np.float32), self.W, self.b)

    def user_offset(self, user_id: str) -> F32 | None:
        """Offset of a user stored in the artifact set [D], or None for an unknown user."""
        row = self.user_row.get(user_id)
        return None if row is None else self.user_offsets[row]
