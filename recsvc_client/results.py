"""Typed results of the client's calls (plain dataclasses; ``raw`` keeps the whole JSON body)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

Mode = Literal["dense", "generative", "hybrid"]


class Filters(TypedDict, total=False):
    """The filters of /recommend and /search: categories (any of), price range (inclusive)."""

    categories: list[str]
    price_min: float
    price_max: float


@dataclass(frozen=True)
class Item:
    """A catalog item in a result list: id, score, rank (1 = best) and its payload (title, brand, ...)."""

    item_id: str
    score: float
    rank: int
    payload: dict[str, Any]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Item:
        return cls(item_id=d["item_id"], score=float(d["score"]), rank=int(d["rank"]), payload=dict(d["payload"]))


@dataclass(frozen=True)
class EmbedResult:
    model: str
    dim: int
    vectors: list[list[float]]
    payloads: list[dict[str, Any]] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EmbedResult:
        return cls(model=d["model"], dim=int(d["dim"]), vectors=d["vectors"], payloads=d.get("payloads"), raw=d)


@dataclass(frozen=True)
class RecommendResult:
    items: list[Item]
    mode: str
    index_version: str
    model_version: str
    cached: bool
    profile_source: str = "none"
    ranking: str = "model"
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RecommendResult:
        return cls(
            items=[Item.from_json(i) for i in d["items"]],
            mode=d["mode"],
            index_version=d["index_version"],
            model_version=d["model_version"],
            cached=bool(d.get("cached", False)),
            profile_source=d.get("profile_source", "none"),
            ranking=d.get("ranking", "model"),
            raw=d,
        )


@dataclass(frozen=True)
class SearchResult:
    items: list[Item]
    index_version: str
    model_version: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SearchResult:
        return cls(
            items=[Item.from_json(i) for i in d["items"]],
            index_version=d["index_version"],
            model_version=d["model_version"],
            raw=d,
        )


@dataclass(frozen=True)
class Embeddings:
    """``POST /v1/embeddings``: vectors in input order (base64 answers decoded), the model, token usage."""

    vectors: list[list[float]]
    model: str
    prompt_tokens: int
    total_tokens: int
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Health:
    status: str


@dataclass(frozen=True)
class Readiness:
    """``GET /readyz`` (answered, not raised, when not ready: ``ready`` is False, ``detail`` says why)."""

    ready: bool
    status: str
    checks: dict[str, bool]
    index_version: str | None = None
    model_version: str | None = None
    detail: str | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Readiness:
        return cls(
            ready=d.get("status") == "ready",
            status=d.get("status", "not_ready"),
            checks=dict(d.get("checks", {})),
            index_version=d.get("index_version"),
            model_version=d.get("model_version"),
            detail=d.get("detail"),
        )


@dataclass(frozen=True)
class ReindexJob:
    job_id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    stage: str
    progress: float
    started_at: str | None = None
    finished_at: str | None = None
    collection: str | None = None
    error: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed")

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ReindexJob:
        return cls(
            job_id=d["job_id"],
            status=d["status"],
            stage=d.get("stage", ""),
            progress=float(d.get("progress", 0.0)),
            started_at=d.get("started_at"),
            finished_at=d.get("finished_at"),
            collection=d.get("collection"),
            error=d.get("error"),
            stats=dict(d.get("stats") or {}),
        )
