"""Everything heavy the service holds, built once in the lifespan into a typed :class:`AppState`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from service.api.deadline import current_deadline
from service.api.metrics import Metrics
from service.artifacts import ArtifactError, LoadedArtifacts, load_artifacts, verify_artifact_set
from service.config import Settings, is_artifact_version
from service.core.manifest import ManifestError, latest_version
from service.encoding.base import Encoder
from service.encoding.batcher import BULK, INTERACTIVE, DeadlineExceededError, DynamicBatcher, QueueFullError
from service.errors import ConfigurationError, OverloadedError
from service.errors import DeadlineExceededError as DeadlineExceeded
from service.recommender.dense import SeqRecRuntime
from service.recommender.generative import GenerativeRuntime
from service.recommender.hybrid import HybridWeights
from service.recommender.service import Recommender
from service.reindex import ReindexManager
from service.stores.cache import MemoryCache, RedisCache, ResponseCache
from service.stores.events import IndexEvents, ItemsChanged, MemoryIndexEvents, RedisIndexEvents, RedisItemEvents
from service.stores.item_log import ItemCatalog, ItemLog
from service.stores.jobs import JobStore, MemoryJobStore, RedisJobStore
from service.stores.qdrant import CatalogSnapshot, QdrantStore
from service.stores.redis_link import RedisHealth, open_redis, redact_url

logger = logging.getLogger(__name__)


@dataclass
class Components:
    """Parts a caller (tests, benchmarks) hands in instead of having them built from settings.

    encoder: e.g. ``FakeEncoder`` (the artifact set's golden vectors must come from it);
    artifacts_root: serve this artifact set folder instead of resolving one under ``artifacts_dir``;
    seqrec: a prebuilt runtime for the set.
    """

    encoder: Encoder | None = None
    artifacts_root: Path | None = None
    seqrec: SeqRecRuntime | None = None


@dataclass
class AppState:
    settings: Settings
    artifacts: LoadedArtifacts
    encoder: Encoder
    batcher: DynamicBatcher
    seqrec: SeqRecRuntime | None
    store: QdrantStore
    cache: ResponseCache
    jobs: JobStore
    events: IndexEvents
    reindex: ReindexManager
    recommender: Recommender
    metrics: Metrics
    device: str
    worker_id: str
    items: ItemCatalog | None = None
    redis: aioredis.Redis | None = None
    redis_health: RedisHealth | None = None  # None: no Redis configured
    ready: bool = False
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack, repr=False)

    @property
    def model_version(self) -> str:
        return self.artifacts.version

    @property
    def model_name(self) -> str:
        return f"{self.encoder.name}@{self.artifacts.version}"

    async def embed(self, texts: Sequence[str], *, lane: str = BULK, deadline: float | None = None) -> np.ndarray:
        """Texts -> [N, dim] unit vectors through the dynamic batcher.

        lane: ``bulk`` (/embed-like callers) or ``interactive`` (served first). deadline:
        ``time.monotonic()`` seconds; None = the current request's deadline (set by
        ``RequestDeadlineMiddleware``), if any. A full queue -> 503 ``overloaded``; a passed
        deadline -> 504 ``deadline_exceeded``.
        """
        return await encode_through(self.batcher, texts, lane=lane, deadline=deadline)

    async def close(self) -> None:
        self.ready = False
        await self._stack.aclose()


async def encode_through(
    batcher: DynamicBatcher, texts: Sequence[str], *, lane: str, deadline: float | None = None
) -> np.ndarray:
    """``batcher.encode`` with the request's deadline and the batcher's errors mapped to service errors."""
    if deadline is None:
        deadline = current_deadline.get()
    try:
        return await batcher.encode(list(texts), lane=lane, deadline=deadline)
    except QueueFullError as exc:
        raise OverloadedError(
            f"{exc}; retry in {exc.retry_after_s} s",
            exc.retry_after_s,
            {"lane": exc.lane, "queued_texts": exc.queued, "limit": exc.limit, "request_texts": exc.asked},
        ) from exc
    except DeadlineExceededError as exc:
        raise DeadlineExceeded(str(exc)) from exc


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when onnxruntime offers CUDA, else ``cpu``."""
    if device != "auto":
        return device
    import onnxruntime as ort

    return "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"


def resolve_artifact_root(settings: Settings, components: Components) -> Path:
    if components.artifacts_root is not None:
        return components.artifacts_root
    base = settings.artifacts_dir
    if settings.artifact_version:
        root = base / settings.artifact_version
        if not (root / "manifest.json").is_file():
            raise ConfigurationError(
                f"artifact set {settings.artifact_version!r} not found under {base} "
                "(unset RECSVC_ARTIFACT_VERSION to serve the latest, or run `make demo-build`)"
            )
    else:
        try:
            root = latest_version(base)
        except (ManifestError, OSError) as exc:
            raise ConfigurationError(
                f"no artifact set to serve under {base.resolve()}: run `make demo-build` (demo data) or "
                "`recsvc-train build --data DIR` first, or point RECSVC_ARTIFACTS_DIR at a built set"
            ) from exc
    # Settings only accept plain names, but LATEST is a file: what is served must be named like a
    # version and sit directly inside artifacts_dir (LATEST holding `../x` or `/abs` is refused).
    if root.parent != base or not is_artifact_version(root.name):
        raise ConfigurationError(
            f"artifact set {str(root)!r} is not a folder directly inside RECSVC_ARTIFACTS_DIR ({base}): "
            f"fix {base / 'LATEST'} or RECSVC_ARTIFACT_VERSION to name one (letters, digits, '.', '_', '-')"
        )
    return root


async def _maybe_await(value: Any) -> None:
    if inspect.isawaitable(value):
        await value


def _load_generative(root: Path, artifacts: LoadedArtifacts, device: str) -> GenerativeRuntime | None:
    """The generative runtime when the set has semantic IDs and a genrec model (else None:
    modes generative/hybrid answer 422 mode_unavailable)."""
    extra = artifacts.manifest.extra
    if "semantic_ids" not in extra or "genrec" not in extra:
        return None
    try:
        return GenerativeRuntime.from_manifest(root, artifacts.manifest, artifacts.item_ids, device)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigurationError(f"artifact set {root}: cannot load semantic IDs / generative model: {exc}") from exc


def _refresh_live_caches(generative: GenerativeRuntime | None, snapshot: CatalogSnapshot) -> None:
    """After a live item change: derive the semantic-ID table of the new snapshot now (from the saved
    codec, with the sids handed out before kept: stable collision digits), so the first generative
    request does not pay for it. Caches are keyed by the snapshot's version (collection + content
    digest), so nothing keyed by the old one has to be dropped (the transition prior re-aligns on use)."""
    if generative is not None:
        generative.prepare_snapshot(snapshot)


# A reader process of the embedded multi-process mode (service/workers.py): given the reader's store,
# the generative runtime and the artifacts, it loads the writer's published snapshot (waiting for the
# first) and keeps following it; what it opens it closes through the exit stack.
ReaderStart = Callable[
    [QdrantStore, GenerativeRuntime | None, LoadedArtifacts, contextlib.AsyncExitStack], Awaitable[None]
]


def _encoder_lanes(
    batcher: Any,
) -> tuple[Callable[[Sequence[str]], Awaitable[np.ndarray]], Callable[[Sequence[str]], Awaitable[np.ndarray]]]:
    """(bulk, interactive) encode functions over the batcher, for the writer and the readers alike."""

    async def embed(texts: Sequence[str]) -> np.ndarray:
        # Reindex: bulk lane, never shed (it queues one chunk at a time), no request deadline.
        return await batcher.encode(list(texts), lane=BULK, shed=False)

    async def embed_interactive(texts: Sequence[str]) -> np.ndarray:
        # /recommend: text history items and profile sentences go ahead of bulk /embed work.
        return await encode_through(batcher, texts, lane=INTERACTIVE)

    return embed, embed_interactive


async def _generative_runtime(
    settings: Settings, root: Path, artifacts: LoadedArtifacts, device: str
) -> GenerativeRuntime | None:
    """The generative runtime (None without one in the artifact set), decoding on the configured threads."""
    generative = await asyncio.to_thread(_load_generative, root, artifacts, device)
    if generative is not None:
        generative.torch_threads = settings.torch_threads
    return generative


def _recommender(
    settings: Settings,
    artifacts: LoadedArtifacts,
    generative: GenerativeRuntime | None,
    store: QdrantStore,
    embed_interactive: Callable[[Sequence[str]], Awaitable[np.ndarray]],
    cache: ResponseCache,
    metrics: Metrics,
) -> Recommender:
    return Recommender(
        generative=generative,
        store=store,
        seqrec=artifacts.seqrec,
        profiles=artifacts.profiles,
        transitions=artifacts.transitions if settings.transition_prior else None,
        transition_pool=settings.transition_pool,
        hybrid_weights=HybridWeights(settings.hybrid_prior_weight, settings.hybrid_generative_weight),
        embed=embed_interactive,
        model_version=artifacts.version,
        cache=cache,
        cache_prefix=settings.redis.key_prefix,
        cache_ttl_s=settings.redis.cache_ttl_s,
        on_cache=metrics.on_cache,
    )


async def build_state(
    settings: Settings,
    components: Components | None = None,
    metrics: Metrics | None = None,
    *,
    reader: ReaderStart | None = None,
) -> AppState:
    """Load, verify and connect everything; clean up whatever was opened if a step fails.

    ``reader``: build a reader process of the embedded multi-process mode (no Qdrant, no reindex, no
    items API: it serves the snapshot ``reader`` loads; its /admin requests go to the writer)."""
    components = components or Components()
    stack = contextlib.AsyncExitStack()
    try:
        return await _build(settings, components, stack, metrics or Metrics(), reader)
    except BaseException:
        await stack.aclose()
        raise


async def _build(
    settings: Settings,
    components: Components,
    stack: contextlib.AsyncExitStack,
    metrics: Metrics,
    reader: ReaderStart | None = None,
) -> AppState:
    root = resolve_artifact_root(settings, components)
    try:  # every file's sha256 checked before any model is loaded from it
        manifest = await asyncio.to_thread(verify_artifact_set, root)
    except ArtifactError as exc:
        raise ConfigurationError(str(exc)) from exc
    device = resolve_device(settings.device)
    logger.info("serving artifact set %s from %s on %s", manifest.version, root, device)

    # ---- models
    encoder = components.encoder
    if encoder is None:
        from service.encoding.onnx_encoder import OnnxEncoder
        from service.encoding.session import SessionTuning

        tuning = SessionTuning(
            spinning=settings.onnx.spinning,
            inter_op_threads=settings.onnx.inter_op_threads,
            graph_level=settings.onnx.graph_level,
            execution_mode=settings.onnx.execution_mode,
        )
        try:
            encoder = await asyncio.to_thread(
                functools.partial(
                    OnnxEncoder.from_manifest,
                    root,
                    manifest.encoder,
                    settings.encoder_variant,
                    device,
                    settings.onnx_threads,
                    batch_size=settings.batcher.run_batch,
                    tuning=tuning,
                    max_batch_tokens=settings.batcher.max_batch_tokens,
                )
            )
        except Exception as exc:
            raise ConfigurationError(f"cannot load the {settings.encoder_variant} encoder of {root}: {exc}") from exc
    assert encoder is not None
    try:
        artifacts = await asyncio.to_thread(
            load_artifacts,
            root,
            encoder,
            variant=settings.encoder_variant,
            device=device,
            threads=settings.onnx_threads,
            seqrec=components.seqrec,
            verified=manifest,
        )
    except ArtifactError as exc:
        raise ConfigurationError(str(exc)) from exc
    if artifacts.profiles is not None:
        artifacts.profiles.cache_size = settings.profile_cache_size
    bs = settings.batcher
    batcher = DynamicBatcher(
        encoder,
        max_batch=bs.max_batch,
        max_wait_ms=bs.max_wait_ms,
        max_queue_texts=bs.max_queue_texts,
        max_interactive_queue_texts=bs.max_interactive_queue_texts,
        pipeline=bs.pipeline,
        on_batch=metrics.on_encoder_batch,
    )
    metrics.track_batcher(batcher)
    await _maybe_await(batcher.start())
    stack.push_async_callback(lambda: _maybe_await(batcher.close()))

    # ---- redis (cache, lock + jobs, alias messages) or their in-process versions
    redis_client: aioredis.Redis | None = None
    cache: ResponseCache
    jobs: JobStore
    events: IndexEvents
    redis_health: RedisHealth | None = None
    if settings.redis.url is not None and settings.redis.url:
        url = settings.redis.url
        # Redis is an accelerator: unreachable at start (or later) the service starts and serves
        # degraded (in-process cache; admin calls that need the lease answer 503) and reconnects.
        rs = settings.redis
        redis_health = RedisHealth(rs.retry_s, on_change=lambda up: metrics.set_degraded("redis", not up))
        metrics.set_degraded("redis", False)
        redis_client = open_redis(url, rs.timeout_s)
        stack.push_async_callback(redis_client.aclose)  # type: ignore[attr-defined]
        pubsub_client = open_redis(url, rs.timeout_s, for_pubsub=True)
        stack.push_async_callback(pubsub_client.aclose)  # type: ignore[attr-defined]
        try:
            await redis_client.ping()
        except (RedisError, OSError) as exc:
            redis_health.mark_down(exc)
            logger.warning(
                "cannot reach Redis at %s (%s): starting degraded (in-process cache; reindex/rollback answer 503 "
                "until it is back)",
                redact_url(url),
                exc.__class__.__name__,
            )
        prefix = rs.key_prefix
        cache = RedisCache(redis_client, redis_health, MemoryCache(rs.memory_cache_size))
        jobs = RedisJobStore(redis_client, prefix, redis_health)
        events = RedisIndexEvents(pubsub_client, prefix, publisher=redis_client)
    else:
        cache = MemoryCache(settings.redis.memory_cache_size)
        jobs = MemoryJobStore()
        events = MemoryIndexEvents()
    stack.push_async_callback(cache.close)

    if reader is not None:
        return await _build_reader(
            settings,
            root,
            device,
            stack,
            metrics,
            reader,
            artifacts,
            encoder,
            batcher,
            cache,
            redis_client,
            redis_health,
        )

    # ---- qdrant
    if settings.qdrant.path and not settings.qdrant.url:
        Path(settings.qdrant.path).mkdir(parents=True, exist_ok=True)
    try:
        store = await asyncio.to_thread(QdrantStore, settings.qdrant)
    except Exception as exc:
        hint = (
            " (another process holds the embedded Qdrant folder: stop it, or run a Qdrant server and set "
            "RECSVC_QDRANT__URL)"
            if settings.qdrant.url is None
            else ""
        )
        raise ConfigurationError(f"cannot open Qdrant: {exc}{hint}") from exc
    stack.callback(store.close)

    metrics.track_index_size(lambda: len(store.snapshot) if store.has_snapshot else 0)
    worker_id = uuid.uuid4().hex[:12]

    embed, embed_interactive = _encoder_lanes(batcher)
    generative = await _generative_runtime(settings, root, artifacts, device)
    reindex = ReindexManager(
        prepare_snapshot=generative.prepare_snapshot if generative is not None else None,
        store=store,
        jobs=jobs,
        events=events,
        artifacts=artifacts,
        embed=embed,
        encoder_name=encoder.name,
        default_catalog=settings.catalog_path,
        catalog_dir=settings.catalog_dir,
        encode_chunk=settings.batcher.max_batch,
        encode_inflight=settings.reindex_encode_inflight,
        lease_s=settings.reindex_lease_s,
        min_share=settings.reindex_min_share,
        keep_collections=settings.reindex_keep_collections,
        worker_id=worker_id,
        on_finished=metrics.on_reindex_finished,
    )
    stack.push_async_callback(reindex.close)
    # Items API: the durable item log, replayed on top of the served collection at start and into
    # every reindex's new collection before the alias swap.
    assert settings.items.log_path is not None
    item_log = ItemLog(Path(settings.items.log_path))
    await asyncio.to_thread(item_log.load)
    items = ItemCatalog(
        item_log,
        store,
        artifacts,
        embed,
        on_snapshot=functools.partial(_refresh_live_caches, generative),
        compact_superseded_lines=settings.items.compact_superseded_lines,
    )
    stack.push_async_callback(items.close)
    reindex.replay_items = items.replay_into
    reindex.items_lock = items.lock
    await reindex.bootstrap(build_if_missing=settings.bootstrap_index)
    await items.replay_served()
    if isinstance(events, RedisIndexEvents):
        events.on_resubscribe = reindex.resync  # swaps published while Redis was down are not lost
    await events.start(reindex.on_index_changed)
    stack.push_async_callback(events.close)
    if redis_client is not None and isinstance(events, RedisIndexEvents):
        item_events = RedisItemEvents(events.client, settings.redis.key_prefix, publisher=redis_client)

        async def publish_items(collection: str, records: list[dict[str, Any]]) -> None:
            await item_events.publish(ItemsChanged(collection, records, origin=worker_id))

        async def on_items(event: ItemsChanged) -> None:
            if event.origin != worker_id:
                await items.on_remote(event.collection, event.records)

        items.publish = publish_items
        await item_events.start(on_items)
        stack.push_async_callback(item_events.close)

    recommender = _recommender(settings, artifacts, generative, store, embed_interactive, cache, metrics)
    state = AppState(
        settings=settings,
        artifacts=artifacts,
        encoder=encoder,
        batcher=batcher,
        seqrec=artifacts.seqrec,
        store=store,
        cache=cache,
        jobs=jobs,
        events=events,
        reindex=reindex,
        recommender=recommender,
        metrics=metrics,
        device=device,
        worker_id=worker_id,
        items=items,
        redis=redis_client,
        redis_health=redis_health,
        _stack=stack,
    )
    state.ready = True
    logger.info(
        "ready: %s, index %s (%d items), %s",
        state.model_name,
        store.snapshot.collection,
        len(store.snapshot),
        ("redis" if redis_health.up else "redis DOWN (degraded)") if redis_health else "in-process cache/lock",
    )
    return state


async def _build_reader(
    settings: Settings,
    root: Path,
    device: str,
    stack: contextlib.AsyncExitStack,
    metrics: Metrics,
    reader: ReaderStart,
    artifacts: LoadedArtifacts,
    encoder: Encoder,
    batcher: DynamicBatcher,
    cache: ResponseCache,
    redis_client: aioredis.Redis | None,
    redis_health: RedisHealth | None,
) -> AppState:
    """The rest of a reader's state: the served snapshot comes from the writer's published files."""
    from service.workers import FollowerStore

    store = FollowerStore(settings.qdrant)
    stack.callback(store.close)
    metrics.track_index_size(lambda: len(store.snapshot) if store.has_snapshot else 0)
    worker_id = uuid.uuid4().hex[:12]

    embed, embed_interactive = _encoder_lanes(batcher)
    generative = await _generative_runtime(settings, root, artifacts, device)
    # Never started here: reindex, rollback and the items API run in the writer (readers forward /admin).
    jobs, events = MemoryJobStore(), MemoryIndexEvents()
    reindex = ReindexManager(
        store=store,
        jobs=jobs,
        events=events,
        artifacts=artifacts,
        embed=embed,
        encoder_name=encoder.name,
        worker_id=worker_id,
    )
    await reader(store, generative, artifacts, stack)
    state = AppState(
        settings=settings,
        artifacts=artifacts,
        encoder=encoder,
        batcher=batcher,
        seqrec=artifacts.seqrec,
        store=store,
        cache=cache,
        jobs=jobs,
        events=events,
        reindex=reindex,
        recommender=_recommender(settings, artifacts, generative, store, embed_interactive, cache, metrics),
        metrics=metrics,
        device=device,
        worker_id=worker_id,
        items=None,
        redis=redis_client,
        redis_health=redis_health,
        _stack=stack,
    )
    state.ready = True
    logger.info(
        "reader ready: %s, index %s (%d items) from the writer's published snapshot",
        state.model_name,
        store.snapshot.collection,
        len(store.snapshot),
    )
    return state
