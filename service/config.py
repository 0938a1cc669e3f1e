"""Service configuration: every knob, from environment variables prefixed ``RECSVC_``.

Nested sections use ``__``: ``RECSVC_QDRANT__URL``, ``RECSVC_REDIS__URL``,
``RECSVC_LIMITS__MAX_K``. A ``.env`` file in the working directory is read too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that mean "nobody set a real token"; admin routes refuse to start with them.
PLACEHOLDER_TOKENS = frozenset(
    {"changeme", "change-me", "change_me", "secret", "password", "token", "admin", "default", "xxx", "todo"}
)
MIN_TOKEN_LENGTH = 16
# An artifact version is the plain name of a folder inside artifacts_dir: no separators, no `..`,
# not absolute (RECSVC_ARTIFACT_VERSION=../../x must not serve a set from elsewhere).
ARTIFACT_VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"


def is_artifact_version(name: str) -> bool:
    """True for a plain folder name an artifact set may have."""
    return re.fullmatch(ARTIFACT_VERSION_PATTERN, name) is not None and ".." not in name


class QdrantSettings(BaseModel):
    url: str | None = Field(
        default=None, description="Qdrant server URL (e.g. http://qdrant:6333). None: embedded Qdrant under `path`."
    )
    path: str | None = Field(
        default=None, description="Folder of the embedded (local-mode) Qdrant. None: `{data_dir}/qdrant`."
    )
    api_key: SecretStr | None = Field(default=None, description="API key of the Qdrant server, if it requires one.")
    alias: str = Field(
        default="items", pattern=r"^[A-Za-z0-9_-]+$", description="Alias that points at the served collection."
    )
    timeout: float = Field(default=10.0, gt=0, description="Seconds before a Qdrant server request times out.")
    exact_local_search: bool = Field(
        default=True,
        description=(
            "Embedded mode only: answer searches from the served snapshot with a vectorised exact search "
            "(same brute-force scores and filter semantics as Qdrant local mode, which evaluates filters in a "
            "Python loop per point: ~0.15-0.4 s at 12k items). False: always query Qdrant."
        ),
    )


class RedisSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="Redis URL (redis://host:6379/0). None: in-process cache, lock and job store (single worker).",
    )
    cache_ttl_s: int = Field(default=300, ge=0, description="Seconds a cached /recommend response lives (0 disables).")
    key_prefix: str = Field(
        default="recsvc", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$", description="Prefix of every Redis key."
    )
    memory_cache_size: int = Field(
        default=10_000, ge=0, description="Entries of the in-process cache (no Redis, or while Redis is down)."
    )
    timeout_s: float = Field(
        default=0.25,
        gt=0,
        le=30,
        description=(
            "Connect and command timeout of Redis calls, in seconds. Redis is an accelerator: a slow or lost "
            "Redis costs a request at most this long, then the cache falls back to in-process."
        ),
    )
    retry_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="After a failed Redis call, how long the cache skips Redis before trying it again.",
    )


class LimitSettings(BaseModel):
    max_embed_items: int = Field(default=256, ge=1, le=4096, description="Most items in one /embed request.")
    max_text_chars: int = Field(default=10_000, ge=1, le=100_000, description="Longest text field, in characters.")
    max_history: int = Field(default=200, ge=1, le=10_000, description="Most history entries in one /recommend.")
    max_k: int = Field(default=100, ge=1, le=1000, description="Largest `k` a /recommend request may ask for.")
    max_request_bytes: int = Field(default=1_000_000, ge=1024, description="Largest request body, in bytes (413).")


class ItemsSettings(BaseModel):
    max_batch: int = Field(
        default=500, ge=1, le=10_000, description="Most items in one PUT/DELETE /admin/items batch (413 above)."
    )
    log_path: Path | None = Field(
        default=None,
        description="Append-only item log (JSON lines, fsynced before the 200). None: `{data_dir}/items/log.jsonl`.",
    )
    compact_superseded_lines: int = Field(
        default=10_000,
        ge=0,
        description="Compact the item log (rewrite it atomically as one line per item id: the latest upsert or "
        "the tombstone) in the background once it holds this many superseded lines; also at start and after "
        "every reindex that replayed it, when anything is superseded. 0: only at start and after reindexes.",
    )


class BatcherSettings(BaseModel):
    max_batch: int = Field(default=64, ge=1, le=1024, description="Most texts the encoder takes in one unit of work.")
    max_wait_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description="Fill window of an idle encoder before it starts a batch (0: start at once; under load "
        "batches fill while the previous one runs).",
    )
    max_queue_texts: int = Field(
        default=512,
        ge=1,
        le=1_000_000,
        description="Bulk lane (/embed): most texts waiting for the encoder; a request past it gets 503 "
        "`overloaded` with Retry-After at once. An empty queue admits any request.",
    )
    max_interactive_queue_texts: int = Field(
        default=256,
        ge=1,
        le=1_000_000,
        description="Interactive lane (/recommend text items and profile sentences, served before bulk): "
        "most texts waiting; past it 503 `overloaded`.",
    )
    pipeline: bool = Field(
        default=True,
        description="Overlap tokenize, model run and pooling on three threads with length-bucketed batches. "
        "False: the plain serial path (one thread runs encoder.encode per batch).",
    )
    max_batch_tokens: int = Field(
        default=4096,
        ge=16,
        le=1_000_000,
        description="Most padded tokens (rows x longest text) in one model call of the pipelined path.",
    )
    run_batch: int = Field(default=32, ge=1, le=1024, description="Most texts in one model call.")


class OnnxSettings(BaseModel):
    """onnxruntime session options of the encoder and the user tower (intra-op threads: `onnx_threads`)."""

    spinning: bool = Field(
        default=False,
        description="Let idle intra-op threads spin between ops. Off: spinning burns the cores the event loop "
        "and the encoder's tokenizer/pool threads need (docs/OPERATIONS.md, 'Encoder engine').",
    )
    inter_op_threads: int = Field(
        default=1, ge=0, le=256, description="Threads running independent graph nodes (parallel mode only)."
    )
    graph_level: Literal["disable", "basic", "extended", "all"] = Field(
        default="all", description="Graph optimisation level (fusions)."
    )
    execution_mode: Literal["sequential", "parallel"] = Field(
        default="sequential", description="Run graph nodes one at a time or in parallel (a BERT graph is a chain)."
    )


class DeadlineSettings(BaseModel):
    default_timeout_ms: int = Field(
        default=30_000,
        ge=0,
        le=3_600_000,
        description="Deadline of a POST request (not /admin) when it names none; past it 504 "
        "`deadline_exceeded` and its queued encoder work is dropped. 0: no default deadline.",
    )
    max_timeout_ms: int = Field(
        default=120_000,
        ge=1,
        le=3_600_000,
        description="Largest deadline a client may ask for with the `X-Request-Timeout-Ms` header.",
    )


class WorkersSettings(BaseModel):
    """Processes serving the API (`recsvc-serve`). With embedded Qdrant (no RECSVC_QDRANT__URL) one process,
    the writer, owns the Qdrant folder, the reindex, the items API and every /admin route; the others,
    readers, serve /recommend, /embed, /search and the probes from the snapshot the writer publishes under
    `publish_dir`, and forward /admin requests to the writer over a unix socket (docs/OPERATIONS.md,
    'Several processes on one node')."""

    count: int = Field(
        default=1,
        ge=0,
        le=64,
        description="Processes serving the API (`recsvc-serve --workers N` overrides it). 0: one per CPU core "
        "with embedded Qdrant, else 1. More than 1 with a Qdrant server also needs Redis.",
    )
    poll_s: float = Field(
        default=0.2,
        gt=0,
        le=10,
        description="Embedded multi-process mode: how often a reader checks the writer's published snapshot "
        "(one stat of the pointer file). An alias swap or an item change reaches the readers within this plus "
        "the time the writer takes to write the snapshot.",
    )
    publish_dir: Path | None = Field(
        default=None,
        description="Embedded multi-process mode: folder of the published snapshots (vectors, payloads, sids) "
        "and their pointer file. None: `{data_dir}/published`.",
    )
    socket_dir: Path | None = Field(
        default=None,
        description="Embedded multi-process mode: folder of the processes' unix sockets (`worker-0.sock` is the "
        "writer, where readers forward /admin). None: `{data_dir}/run`, or a folder under the system temp dir "
        "when that path is too long for a unix socket.",
    )
    forward_timeout_s: float = Field(
        default=300.0,
        gt=0,
        le=3600,
        description="Embedded multi-process mode: longest a reader waits for the writer's answer to a forwarded "
        "/admin request before answering 503 `writer_unavailable`.",
    )
    restart_delay_s: float = Field(
        default=1.0,
        gt=0,
        le=300,
        description="Embedded multi-process mode: pause before a process that died is started again (doubling "
        "while it keeps dying within a minute of its start, up to 30 s).",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RECSVC_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        validate_default=True,
    )

    data_dir: Path = Field(default=Path("var"), description="Writable state: embedded Qdrant, local files.")
    artifacts_dir: Path = Field(default=Path("artifacts"), description="Folder of artifact sets (`<version>/`).")
    artifact_version: str | None = Field(
        default=None,
        description="Artifact set to serve: the plain name of a folder inside `artifacts_dir` (letters, digits, "
        "`.`, `_`, `-`; no path). None: the latest (`artifacts_dir/LATEST` or newest).",
    )
    catalog_path: Path | None = Field(
        default=None, description="Catalog (items.jsonl) a reindex reads. None: the artifact set's catalog."
    )
    admin_token: SecretStr | None = Field(
        default=None, description=f"Bearer token of /admin routes (at least {MIN_TOKEN_LENGTH} characters)."
    )
    enable_admin: bool = Field(default=True, description="Serve the /admin routes.")
    bootstrap_index: bool = Field(
        default=True, description="At start, build the Qdrant index from the artifact set when the alias is missing."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Where models run: auto = CUDA when onnxruntime offers it, else CPU."
    )
    encoder_variant: Literal["int8", "fp32"] = Field(default="int8", description="ONNX encoder variant to serve.")
    onnx_threads: int = Field(default=0, ge=0, le=256, description="Intra-op threads per ONNX session (0 = default).")
    torch_threads: int = Field(
        default=1,
        ge=0,
        le=256,
        description="Intra-op threads of torch for each generative decode on CPU (0 = torch's default, one per "
        "core). A one-request decode is many small ops: on the shared 2-core machine, demo set, 1 client, 1 thread "
        "gave generative p99 61 ms against 130 ms with the default (docs/OPERATIONS.md, 'Generative decoding "
        "threads').",
    )
    profile_cache_size: int = Field(
        default=4096,
        ge=0,
        description="Embedded profile sentences kept per worker (LRU) for models with user profiles; 0 disables.",
    )
    transition_prior: bool = Field(
        default=True,
        description=(
            "Dense mode: add the artifact set's item -> next item prior to the seqrec scores when it has one "
            "(RECSVC_TRANSITION_PRIOR=false serves the seqrec ranking alone)."
        ),
    )
    transition_pool: int = Field(
        default=200,
        ge=1,
        le=10_000,
        description="Dense candidates (max(k, pool)) rescored with the transition prior (+ last item's successors).",
    )
    hybrid_prior_weight: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Hybrid mode: weight of the transition prior's log p(j | context) in the merged score (with the "
            "context's successors added to the pool; service/recommender/hybrid.py). Picked on validation by "
            "recsvc-train bench-genrec --hybrid (docs/RESULTS.md); 0 = off."
        ),
    )
    hybrid_generative_weight: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Hybrid mode: weight of the beam-score bonus (beam score minus the request's lowest) in the merged "
            "score; 0 = the dense score alone orders the pool. Picked with hybrid_prior_weight."
        ),
    )
    reindex_lease_s: float = Field(
        default=15.0,
        ge=1.0,
        le=600.0,
        description=(
            "Seconds the reindex lock (a lease) lives unless its owner renews it; the owning worker renews it "
            "every lease/3 while the job runs. A job whose owner died is marked failed ('abandoned'), its lock "
            "freed and its partial collection dropped within one lease."
        ),
    )
    catalog_dir: Path | None = Field(
        default=None,
        description=(
            "The only folder `POST /admin/reindex` reads catalogs from (`catalog_path` is a name inside it; "
            "no traversal, no symlinks out). None: `{data_dir}/catalogs`. The configured `catalog_path` and "
            "the artifact set's own catalog stay usable as the default when a request names none."
        ),
    )
    reindex_min_share: float = Field(
        default=0.9,
        ge=0.0,
        le=1.0,
        description=(
            "Shrink guard: a reindex whose catalog holds fewer items than this share of the served one is "
            "refused (422 catalog_shrink) unless the request says `force: true`. 0 disables it."
        ),
    )
    reindex_encode_inflight: int = Field(
        default=4,
        ge=1,
        le=64,
        description=(
            "Chunks of `batcher.max_batch` texts a reindex keeps queued in the encoder's bulk lane at once. "
            "1 queues the next chunk only after the previous one came back (the encoder's tokenize/run/pool "
            "stages then never overlap); more keep the model busy. Interactive encodes still go first."
        ),
    )
    reindex_keep_collections: int = Field(
        default=1,
        ge=0,
        le=20,
        description="Previous collections kept after an alias swap, for `POST /admin/rollback` (0: none kept).",
    )
    qdrant: QdrantSettings = Field(default_factory=QdrantSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    items: ItemsSettings = Field(default_factory=ItemsSettings, description="Items API (PUT/DELETE /admin/items).")
    batcher: BatcherSettings = Field(default_factory=BatcherSettings)
    onnx: OnnxSettings = Field(default_factory=OnnxSettings)
    deadlines: DeadlineSettings = Field(default_factory=DeadlineSettings)
    workers: WorkersSettings = Field(default_factory=WorkersSettings, description="Serving processes.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Root log level.")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Console log lines: text (readable, with [request id]) or json (one object per line: ts, level, "
        "logger, message, request_id, ...).",
    )
    access_log: bool = Field(
        default=True, description="Log one line per request (method, path, status, ms, request id) on service.access."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description='Origins allowed by CORS (JSON list, e.g. ["https://app.example"]).'
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

    @field_validator("artifact_version")
    @classmethod
    def _plain_version(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        if not is_artifact_version(v):
            raise ValueError(
                f"{v!r} is not an artifact version: give the plain name of a folder inside RECSVC_ARTIFACTS_DIR "
                "(letters, digits, '.', '_', '-'; no '/', '\\', '..' or absolute path), e.g. 20260101-120000-demo"
            )
        return v

    @model_validator(mode="after")
    def _default_qdrant_path(self) -> Settings:
        if self.qdrant.url is None and self.qdrant.path is None:
            self.qdrant.path = str(self.data_dir / "qdrant")
        return self

    @model_validator(mode="after")
    def _default_items_log(self) -> Settings:
        if self.items.log_path is None:
            self.items.log_path = self.data_dir / "items" / "log.jsonl"
        return self

    @model_validator(mode="after")
    def _default_workers_dirs(self) -> Settings:
        if self.workers.publish_dir is None:
            self.workers.publish_dir = self.data_dir / "published"
        return self

    @model_validator(mode="after")
    def _default_catalog_dir(self) -> Settings:
        if self.catalog_dir is None:
            self.catalog_dir = self.data_dir / "catalogs"
        return self

    # ------------------------------------------------------------ helpers
    def admin_token_problem(self) -> str | None:
        """Why the admin token is unusable, or None when admin routes may start."""
        if not self.enable_admin:
            return None
        token = self.admin_token.get_secret_value().strip() if self.admin_token is not None else ""
        if not token:
            return "RECSVC_ADMIN_TOKEN is empty"
        if token.lower() in PLACEHOLDER_TOKENS:
            return "RECSVC_ADMIN_TOKEN is a placeholder value"
        if len(token) < MIN_TOKEN_LENGTH:
            return f"RECSVC_ADMIN_TOKEN is shorter than {MIN_TOKEN_LENGTH} characters"
        return None

    @property
    def multi_worker_safe(self) -> bool:
        """True when state is shared through Redis and a Qdrant server (more than one worker is fine)."""
        return self.redis.url is not None and self.qdrant.url is not None
