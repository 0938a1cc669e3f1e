"""Request and response models of the HTTP API.

Sizes with a configured limit (``Settings.limits``: items per /embed, history
length, ``k``, text length) have no cap in the models: they are checked by
:func:`check_embed_limits` / :func:`check_recommend_limits` and answered with
413 ``limit_exceeded`` naming the configured number, however far over it a
request goes (a model cap would answer 422 quoting the cap instead). The
request body size limit (``limits.max_request_bytes``, checked before parsing)
bounds what a request can hold. Other bounds here (tags per item, id length)
are schema constraints (422). Numbers and booleans are strict: ``true`` is not
``1`` and ``"5"`` is not ``5``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints, model_validator

from service.config import LimitSettings
from service.core.items import Item, item_text
from service.errors import LimitExceededError

HARD_MAX_TAGS = 256
StrictFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class ItemText(BaseModel):
    """An item given by its text: structured fields (``title`` required) or one raw ``text``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "Hydrating face serum with hyaluronic acid",
                    "brand": "Glow Lab",
                    "categories": ["Beauty", "Skin Care"],
                    "features": ["30 ml", "fragrance free"],
                },
                {"text": "travel size shampoo for curly hair"},
            ]
        },
    )

    # Text lengths: at most limits.max_text_chars each (413 limit_exceeded), checked after parsing.
    text: str | None = Field(default=None, min_length=1, description="Raw text, used as is.")
    title: str | None = Field(default=None, min_length=1)
    description: str = ""
    brand: str = ""
    categories: list[str] = Field(default_factory=list, max_length=HARD_MAX_TAGS)
    features: list[str] = Field(default_factory=list, max_length=HARD_MAX_TAGS)
    attributes: dict[str, str] = Field(default_factory=dict, max_length=HARD_MAX_TAGS)

    @model_validator(mode="after")
    def _one_form(self) -> ItemText:
        structured = bool(self.description or self.brand or self.categories or self.features or self.attributes)
        if self.text is not None:
            if self.title is not None or structured:
                raise ValueError("give either 'text' or structured fields ('title', ...), not both")
            if not self.text.strip():
                raise ValueError("'text' is blank")
        else:
            if self.title is None or not self.title.strip():
                raise ValueError("give 'title' (with optional structured fields) or 'text'")
        return self

    def strings(self) -> Iterator[str]:
        """Every free-text value (for the configured length limit)."""
        for s in (self.text, self.title, self.description, self.brand):
            if s:
                yield s
        yield from self.categories
        yield from self.features
        yield from self.attributes.keys()
        yield from self.attributes.values()

    def to_item(self, item_id: str = "") -> Item:
        """The structured form as a catalog :class:`Item` (raw text has no structure: its title is the text)."""
        if self.text is not None:
            return Item(item_id=item_id, title=self.text.strip())
        assert self.title is not None
        return Item(
            item_id=item_id,
            title=self.title.strip(),
            description=self.description.strip(),
            brand=self.brand.strip(),
            categories=tuple(c.strip() for c in self.categories if c.strip()),
            features=tuple(f.strip() for f in self.features if f.strip()),
            attributes={k: v for k, v in self.attributes.items() if v.strip()},
        )

    def encoder_text(self) -> str:
        """What the encoder sees: raw text as is, structured fields through the shared ``item_text``."""
        if self.text is not None:
            return self.text.strip()
        return item_text(self.to_item())


# --------------------------------------------------------------------- /embed
class EmbedRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {"title": "Matte lipstick, long lasting", "brand": "Rouge", "categories": ["Makeup"]},
                        {"text": "vitamin C brightening cream"},
                    ],
                    "return_payload": False,
                }
            ]
        },
    )

    items: list[ItemText] = Field(
        min_length=1,
        description="Items to embed, in order: at most limits.max_embed_items (default 256; more: 413 "
        "limit_exceeded); each text field at most limits.max_text_chars characters (default 10000).",
    )
    return_payload: StrictBool = Field(default=False, description="Also return each item's fields and encoder text.")
    encoding: Literal["float", "base64"] = Field(
        default="float",
        description="float: each vector is a list of numbers. base64: each vector is one base64 string of its "
        "`dim` little-endian float32 values (numpy: `np.frombuffer(base64.b64decode(s), '<f4')`); ~4x smaller.",
    )


class EmbedResponse(BaseModel):
    model: str = Field(description="Encoder name and artifact version that produced the vectors.")
    dim: int
    encoding: Literal["float", "base64"] = Field(default="float", description="How `vectors` are written.")
    vectors: list[list[float]] | list[str] = Field(
        description="One L2-normalised vector per item, in request order (base64 strings with encoding=base64)."
    )
    payloads: list[dict[str, Any]] | None = Field(default=None, description="Per item: fields + `text` (if asked).")


def check_embed_limits(req: EmbedRequest, limits: LimitSettings) -> None:
    if len(req.items) > limits.max_embed_items:
        raise LimitExceededError("items", limits.max_embed_items, len(req.items))
    for item in req.items:
        for s in item.strings():
            if len(s) > limits.max_text_chars:
                raise LimitExceededError("text length", limits.max_text_chars, len(s))


# ------------------------------------------------------------------ /recommend
class ItemRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: str = Field(min_length=1, max_length=512)


class NewItem(BaseModel):
    """An item the catalog does not hold, given by its text (cold start)."""

    model_config = ConfigDict(extra="forbid")
    item: ItemText


HistoryEntry = ItemRef | NewItem
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=512)]

# A user profile: the field names of the dataset's users.jsonl rows, JSON scalar values. The shape is
# checked here; which fields and types the served model takes is checked against its manifest
# (service/recommender/profiles.py, 422 invalid_profile).
MAX_PROFILE_FIELDS = 64
ProfileKey = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
ProfileValue = (
    StrictBool
    | StrictInt
    | Annotated[float, Field(strict=True, allow_inf_nan=False)]
    | Annotated[str, StringConstraints(max_length=256)]
    | None
)
ProfileSource = Literal["request", "user", "default", "ignored", "none"]
Ranking = Literal["model", "model+transition_prior"]


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    categories: list[str] = Field(
        default_factory=list, max_length=HARD_MAX_TAGS, description="Keep items in any of these categories."
    )
    price_min: StrictFloat | None = Field(
        default=None, ge=0, description="Keep items priced at least this (inclusive)."
    )
    price_max: StrictFloat | None = Field(default=None, ge=0, description="Keep items priced at most this (inclusive).")

    @model_validator(mode="after")
    def _range(self) -> Filters:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError("price_min is greater than price_max")
        return self


class RecommendRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "history": ["B0001", {"item_id": "B0002"}, {"item": {"title": "Rose water facial toner"}}],
                    "k": 10,
                    "exclude_history": True,
                    "filters": {"categories": ["Skin Care"], "price_max": 30},
                    "mode": "dense",
                },
                {
                    "history": ["D000012", "D000345"],
                    "profile": {"age": 24, "gender": "F", "occupation": "student", "country": "DE"},
                },
                {"history": ["D000012"], "user_id": "U000042"},
            ]
        },
    )

    history: list[ItemId | HistoryEntry] = Field(
        description="Oldest first: item ids (string or {item_id}), or {item: {...}} for an item not in the catalog; "
        "at most limits.max_history entries (default 200; more: 413 limit_exceeded).",
    )
    k: StrictInt = Field(
        default=10, ge=1, description="How many items to return: at most limits.max_k (default 100; more: 413)."
    )
    exclude_history: StrictBool = Field(default=True, description="Never return items of the history.")
    filters: Filters | None = None
    mode: Literal["dense", "generative", "hybrid"] = Field(
        default="dense",
        description="dense: sequential recommender + ANN. generative: semantic-ID beam search. hybrid: both, "
        "rescored by the dense model (generative and hybrid need an artifact set with semantic IDs).",
    )
    profile: dict[ProfileKey, ProfileValue] | None = Field(
        default=None,
        max_length=MAX_PROFILE_FIELDS,
        description="User profile, field name -> value, with the field names of the dataset's users.jsonl rows "
        "(e.g. age, gender, occupation). Used by a model trained with profiles (dense and hybrid modes); "
        "unknown fields or wrong types -> 422 invalid_profile. Ignored (profile_source 'ignored') by a model "
        "trained without them. Takes precedence over the stored profile of user_id.",
    )
    user_id: ItemId | None = Field(
        default=None,
        description="A user of the training data: their stored profile is used when the request has no "
        "profile. Unknown users get the default (mean) profile.",
    )

    def history_entries(self) -> list[ItemRef | NewItem]:
        return [ItemRef(item_id=e) if isinstance(e, str) else e for e in self.history]


def check_recommend_limits(req: RecommendRequest, limits: LimitSettings) -> None:
    if len(req.history) > limits.max_history:
        raise LimitExceededError("history", limits.max_history, len(req.history))
    if req.k > limits.max_k:
        raise LimitExceededError("k", limits.max_k, req.k)
    for entry in req.history:
        if isinstance(entry, NewItem):
            for s in entry.item.strings():
                if len(s) > limits.max_text_chars:
                    raise LimitExceededError("text length", limits.max_text_chars, len(s))


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    rank: int = Field(ge=1)
    payload: dict[str, Any]


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]
    mode: str
    index_version: str = Field(description="Qdrant collection the results came from.")
    model_version: str = Field(description="Artifact set version of the models.")
    cached: bool = Field(description="True when served from the response cache.")
    profile_source: ProfileSource = Field(
        default="none",
        description="Which user profile shaped the results: 'request' (the request's profile), 'user' (the "
        "stored profile of user_id), 'default' (the model uses profiles but none was given or known: the mean "
        "profile of the training users), 'ignored' (a profile or user_id was given but the model or mode takes "
        "none), 'none' (no profile given, none used).",
    )
    ranking: Ranking = Field(
        default="model",
        description="How the items were ranked: 'model+transition_prior' (dense mode with a seqrec model and an "
        "artifact set holding the item -> next item prior: seqrec dot product + w * log p(item | last history "
        "item), when the last history entry is a catalog item the prior knows; generative mode with a genrec "
        "prior weight: constrained beam search guided by the same prior), else 'model'.",
    )


# ---------------------------------------------------------------------- admin
class ReindexRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{}, {"catalog_path": "items.jsonl"}, {"catalog_path": "2026-12/items.jsonl", "dry_run": True}]
        },
    )
    catalog_path: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description=(
            "items.jsonl to index: a name inside the catalog directory (RECSVC_CATALOG_DIR; no '..', no "
            "symlinks out). None: the configured catalog (or the artifact set's)."
        ),
    )
    force: StrictBool = Field(
        default=False, description="Index the catalog even when it is below the shrink guard's share of the served one."
    )
    dry_run: StrictBool = Field(
        default=False, description="Only report what would change (added/removed/changed counts); touch nothing."
    )


class JobOut(BaseModel):
    job_id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    stage: str
    progress: float = Field(ge=0, le=1)
    started_at: str | None = None
    finished_at: str | None = None
    collection: str | None = None
    error: str | None = None
    stats: dict[str, Any] = Field(default_factory=dict)


class ReindexAccepted(BaseModel):
    job_id: str
    status: str


class ReindexDryRun(BaseModel):
    dry_run: Literal[True] = True
    catalog: str = Field(description="The catalog read (the request's name, or the default).")
    items: int = Field(description="Items in the catalog.")
    current_items: int = Field(description="Items served now.")
    added: int
    removed: int
    changed: int = Field(description="Items in both whose fields differ.")
    unchanged: int
    shrink_refused: str | None = Field(
        default=None, description="Why a real run would be refused by the shrink guard (None: it would run)."
    )


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}, {"collection": "items_v3"}]})
    collection: str | None = Field(
        default=None,
        max_length=255,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Kept collection to serve again. None: the most recently retired one.",
    )


class RollbackOut(BaseModel):
    collection: str = Field(description="The collection the alias points at now.")
    previous: str | None = Field(description="The collection it pointed at before (now kept for rollback).")
    items: int
    kept: list[str] = Field(description="Kept previous collections, most recently retired first.")
    stats: dict[str, Any] = Field(default_factory=dict)


class CollectionOut(BaseModel):
    name: str
    role: Literal["serving", "kept", "other"]
    items: int | None = None
    artifact_version: str | None = None
    job_id: str | None = None
    built_at: str | None = None


class CollectionsOut(BaseModel):
    alias: str
    current: str | None
    kept: list[str]
    collections: list[CollectionOut]


class ReadyResponse(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, bool]
    degraded: list[str] = Field(
        default_factory=list,
        description="Optional components that are down (e.g. 'redis'); the service still answers /recommend, /embed.",
    )
    index_version: str | None = None
    model_version: str | None = None
    detail: str | None = None


# ------------------------------------------------------------------ items API
class ItemsUpsertRequest(BaseModel):
    """``PUT /admin/items``: items in the shape of one ``items.jsonl`` line each."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "item_id": "N000001",
                            "title": "Argan oil repair shampoo",
                            "brand": "Acme",
                            "categories": ["Hair", "Shampoo"],
                            "price": 12.5,
                            "attributes": {"size": "250 ml"},
                        }
                    ]
                }
            ]
        },
    )

    items: list[dict[str, Any]] = Field(
        min_length=1,
        description="Items to create or replace by `item_id` (title required; description, brand, categories, "
        "features, price, year, genres, attributes optional). At most items.max_batch (else 413).",
    )


class ItemsDeleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"ids": ["N000001"]}]})

    ids: list[str] = Field(min_length=1, description="Item ids to remove. At most items.max_batch (else 413).")


class ItemsChangeOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"created": 1, "updated": 0, "unchanged": 0, "deleted": 0, "index_version": "items_0003"}]
        }
    )

    created: int = Field(description="Ids not served before.")
    updated: int = Field(description="Served ids whose fields changed.")
    unchanged: int = Field(description="Ids already in this state (a repeated request changes nothing).")
    deleted: int = Field(description="Served ids removed.")
    index_version: str = Field(description="Collection now serving the change.")
