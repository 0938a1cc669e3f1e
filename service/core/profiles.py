"""User profiles as text, shared by training and serving (no web or ML dependencies).

A ``users.jsonl`` row such as ``{"age": 24, "gender": "M", "occupation": "technician", "zip": "85711"}``
becomes one English sentence, ``"A 24-year-old man, who works as a technician, living in zip code
area 85711."``. The text encoder that embeds item text embeds that sentence too, and the sequential
model adds a projection of the vector to every input position (``training/models/seqrec.py``,
``SeqRec(profile_dim=P)``). Training (``training/data/profiles.py``) and the service
(``service/recommender/profiles.py``) both call :func:`profile_sentence`, so a profile sent to
``POST /recommend`` is verbalised exactly as the same row was in training.

The manifest section ``extra["profile"]`` (:class:`ProfileSpec`) records what serving needs: the
projection file, the profile fields the model was trained with and their JSON types (the service
validates requests against them), the stored per-user vectors, and a few golden
(profile -> sentence) pairs the service re-checks at start, so a changed verbaliser cannot serve
an old model silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

PROFILE_SECTION = "profile"  # key of the profile section in Manifest.extra
NO_PROFILE = "A user with no profile."
FIELD_TYPES = ("number", "string", "boolean")

_GENDER = {"m": "man", "male": "man", "f": "woman", "female": "woman"}
_KNOWN = ("age", "gender", "occupation", "zip")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def profile_sentence(profile: Mapping[str, Any] | None) -> str:
    """One English sentence describing a user profile (``NO_PROFILE`` when empty or missing).

    ``age``, ``gender``, ``occupation`` and ``zip`` get their own phrasing; every other field with a
    value is written as ``"Key: value."``, in key order, so the sentence does not depend on the order
    in which a client (or a file) lists the fields, and no information is dropped silently.
    """
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
    extra = [
        f"{k.replace('_', ' ').capitalize()}: {profile[k]}." for k in sorted(profile) if k not in _KNOWN and profile[k]
    ]
    if sentence == "A person." and not extra:
        return NO_PROFILE
    return " ".join([sentence, *extra])


def field_type(value: Any) -> str | None:
    """JSON type of a profile value as :data:`FIELD_TYPES` names it; None for null/other values."""
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def infer_fields(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Profile field -> JSON type over ``rows`` (``users.jsonl`` rows without ``user_id``), in order of
    first appearance. A field whose values mix types (or are lists/objects) is typed ``"string"``:
    the service then accepts it as text, which is how the verbaliser writes it anyway."""
    seen: dict[str, set[str]] = {}
    for row in rows:
        for key, value in row.items():
            if key == "user_id":
                continue
            types = seen.setdefault(key, set())
            if value is not None:
                types.add(field_type(value) or "string")
    return {k: (next(iter(t)) if len(t) == 1 else "string") for k, t in seen.items()}


@dataclass
class ProfileGolden:
    """A profile and the sentence the verbaliser wrote for it when the set was built."""

    profile: dict[str, Any]
    sentence: str


@dataclass
class ProfileSpec:
    """The ``profile`` section of the manifest (stored in ``Manifest.extra``).

    ``projection``: npz with ``W`` [dim, D], ``b`` [D] (the model's ``profile_proj``) and ``mean`` [dim]
    (the mean profile vector of the training users, served when a request brings no profile);
    ``user_ids`` / ``vectors``: JSON list of the users with a ``users.jsonl`` row and their profile
    vectors [U, dim] (requests naming a known ``user_id``); ``fields``: field -> JSON type.
    """

    dim: int
    projection: str
    user_ids: str
    vectors: str
    fields: dict[str, str]
    n_users: int = 0
    coverage: float = 0.0  # share of training users with a real profile (not NO_PROFILE)
    missing: str = "mean"  # what a request without a profile gets (documented in docs/OPERATIONS.md)
    golden: list[ProfileGolden] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProfileSpec:
        try:
            values = dict(d)
            values["golden"] = [ProfileGolden(**g) for g in values.get("golden", [])]
            spec = cls(**values)
        except TypeError as exc:
            raise ValueError(f"malformed profile manifest section: {exc}") from exc
        bad = {k: t for k, t in spec.fields.items() if t not in FIELD_TYPES}
        if bad:
            raise ValueError(f"profile manifest section: unknown field types {bad} (known: {', '.join(FIELD_TYPES)})")
        return spec

    def paths(self) -> list[str]:
        return [self.projection, self.user_ids, self.vectors]

    def check_golden(self) -> None:
        """Raise ValueError when :func:`profile_sentence` no longer writes the recorded sentences."""
        for g in self.golden:
            now = profile_sentence(g.profile)
            if now != g.sentence:
                raise ValueError(
                    f"the profile verbaliser changed since this set was built: {g.profile} gave {g.sentence!r}, "
                    f"now {now!r}; rebuild the artifact set"
                )
