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
from service.core.manifest import Manifest, ManifestError, latest_version
from service.encoding.base import Encoder
from service.encoding.batcher import BULK, INTERACTIVE, DeadlineExceededError, DynamicBatcher, QueueFullError
from service.errors import ConfigurationError, OverloadedError
from service.errors import DeadlineExceededError as DeadlineExceeded
from service.features import FEATURES, GENERATIVE, FeatureRuntimes, serve_features
from service.recommender.dense import SeqRecRuntime
from service.recommender.generative import GenerativeRuntime
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
EmbedFn = Callable[[Sequence[str]], Awaitable[np.ndarray]]


def _encoder_lanes(batcher: Any) -> tuple[EmbedFn, EmbedFn]:
    """(bulk, interactive) encode functions over the batcher, for the writer and the readers alike."""

    async def embed(texts: Sequence[str]) -> np.ndarray:
        # Reindex: bulk lane, never shed (it queues one chunk at a time), no request deadline.
        return await batcher.encode(list(texts), lane=BULK, shed=False)

    async def embed_interactive(texts: Sequence[str]) -> np.ndarray:
        # /recommend: text history items and profile sentences go ahead of bulk /embed work.
        return await encode_through(batcher, texts, lane=INTERACTIVE)

    return embed, embed_interactive


@dataclass
class _Backends:
    """Redis (cache, lock + jobs, alias messages) or their in-process versions."""

    cache: ResponseCache
    jobs: JobStore
    events: IndexEvents
    redis: aioredis.Redis | None = None
    health: RedisHealth | None = None  # None: no Redis configured


@dataclass
class _Loaded:
    """What the writer and the readers build alike, before their stores differ."""

    device: str
    artifacts: LoadedArtifacts
    features: FeatureRuntimes  # the served features' runtimes with the settings applied
    encoder: Encoder
    batcher: DynamicBatcher
    backends: _Backends
    embed: EmbedFn  # bulk lane (reindex, items API)
    embed_interactive: EmbedFn  # interactive lane (/recommend)

    @property
    def generative(self) -> GenerativeRuntime | None:
        return self.features.get(GENERATIVE)


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
    loaded = await _load(settings, components, stack, metrics)
    if reader is not None:
        return await _build_reader(settings, loaded, stack, metrics, reader)
    return await _build_writer(settings, loaded, stack, metrics)


async def _load(
    settings: Settings, components: Components, stack: contextlib.AsyncExitStack, metrics: Metrics
) -> _Loaded:
    """Verify the artifact set, load the models and the served features, start the batcher, open Redis."""
    root = resolve_artifact_root(settings, components)
    try:  # every file's sha256 checked before any model is loaded from it
        manifest = await asyncio.to_thread(verify_artifact_set, root)
    except ArtifactError as exc:
        raise ConfigurationError(str(exc)) from exc
    device = resolve_device(settings.device)
    logger.info("serving artifact set %s from %s on %s", manifest.version, root, device)
    encoder = components.encoder
    if encoder is None:
        encoder = await _open_encoder(settings, root, manifest, device)
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
    batcher = await _start_batcher(settings, encoder, stack, metrics)
    embed, embed_interactive = _encoder_lanes(batcher)
    return _Loaded(
        device=device,
        artifacts=artifacts,
        features=serve_features(FEATURES, artifacts.features, settings),
        encoder=encoder,
        batcher=batcher,
        backends=await _open_backends(settings, stack, metrics),
        embed=embed,
        embed_interactive=embed_interactive,
    )


async def _open_encoder(settings: Settings, root: Path, manifest: Manifest, device: str) -> Encoder:
    """The ONNX encoder of the artifact set (variant, threads and session tuning from the settings)."""
    from service.encoding.onnx_encoder import OnnxEncoder
    from service.encoding.session import SessionTuning

    tuning = SessionTuning(
        spinning=settings.onnx.spinning,
        inter_op_threads=settings.onnx.inter_op_threads,
        graph_level=settings.onnx.graph_level,
        execution_mode=settings.onnx.execution_mode,
    )
    try:
        encoder: Encoder = await asyncio.to_thread(
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
    return encoder


async def _start_batcher(
    settings: Settings, encoder: Encoder, stack: contextlib.AsyncExitStack, metrics: Metrics
) -> DynamicBatcher:
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
    return batcher


async def _open_backends(settings: Settings, stack: contextlib.AsyncExitStack, metrics: Metrics) -> _Backends:
    """Redis clients, cache, job store and index events; the in-process versions without a Redis URL."""
    rs = settings.redis
    if not rs.url:
        backends = _Backends(MemoryCache(rs.memory_cache_size), MemoryJobStore(), MemoryIndexEvents())
        stack.push_async_callback(backends.cache.close)
        return backends
    url = rs.url
    # Redis is an accelerator: unreachable at start (or later) the service starts and serves
    # degraded (in-process cache; admin calls that need the lease answer 503) and reconnects.
    health = RedisHealth(rs.retry_s, on_change=lambda up: metrics.set_degraded("redis", not up))
    metrics.set_degraded("redis", False)
    client = open_redis(url, rs.timeout_s)
    stack.push_async_callback(client.aclose)  # type: ignore[attr-defined]
    pubsub_client = open_redis(url, rs.timeout_s, for_pubsub=True)
    stack.push_async_callback(pubsub_client.aclose)  # type: ignore[attr-defined]
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        health.mark_down(exc)
        logger.warning(
            "cannot reach Redis at %s (%s): starting degraded (in-process cache; reindex/rollback answer 503 "
            "until it is back)",
            redact_url(url),
            exc.__class__.__name__,
        )
    backends = _Backends(
        cache=RedisCache(client, health, MemoryCache(rs.memory_cache_size)),
        jobs=RedisJobStore(client, rs.key_prefix, health),
        events=RedisIndexEvents(pubsub_client, rs.key_prefix, publisher=client),
        redis=client,
        health=health,
    )
    stack.push_async_callback(backends.cache.close)
    return backends


async def _open_qdrant(settings: Settings, stack: contextlib.AsyncExitStack) -> QdrantStore:
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
    return store


def _state(
    settings: Settings,
    loaded: _Loaded,
    stack: contextlib.AsyncExitStack,
    metrics: Metrics,
    reindex: ReindexManager,
    worker_id: str,
    items: ItemCatalog | None,
) -> AppState:
    """The ready state of a writer or a reader around the store, jobs and events of ``reindex`` (the
    Recommender serves the store's snapshot)."""
    artifacts, backends, store = loaded.artifacts, loaded.backends, reindex.store
    recommender = Recommender(
        store=store,
        seqrec=artifacts.seqrec,
        features=loaded.features,
        embed=loaded.embed_interactive,
        model_version=artifacts.version,
        cache=backends.cache,
        cache_prefix=settings.redis.key_prefix,
        cache_ttl_s=settings.redis.cache_ttl_s,
        on_cache=metrics.on_cache,
    )
    state = AppState(
        settings=settings,
        artifacts=artifacts,
        encoder=loaded.encoder,
        batcher=loaded.batcher,
        seqrec=artifacts.seqrec,
        store=store,
        cache=backends.cache,
        jobs=reindex.jobs,
        events=reindex.events,
        reindex=reindex,
        recommender=recommender,
        metrics=metrics,
        device=loaded.device,
        worker_id=worker_id,
        items=items,
        redis=backends.redis,
        redis_health=backends.health,
        _stack=stack,
    )
    state.ready = True
    return state


def _track_index(store: QdrantStore, metrics: Metrics) -> str:
    """Export the served index size; -> a new worker id."""
    metrics.track_index_size(lambda: len(store.snapshot) if store.has_snapshot else 0)
    return uuid.uuid4().hex[:12]


async def _build_writer(
    settings: Settings, loaded: _Loaded, stack: contextlib.AsyncExitStack, metrics: Metrics
) -> AppState:
    """The writer (the only process in single-process mode): Qdrant, reindex, the items API."""
    store = await _open_qdrant(settings, stack)
    worker_id = _track_index(store, metrics)
    backends, generative = loaded.backends, loaded.generative
    reindex = ReindexManager(
        prepare_snapshot=generative.prepare_snapshot if generative is not None else None,
        store=store,
        jobs=backends.jobs,
        events=backends.events,
        artifacts=loaded.artifacts,
        embed=loaded.embed,
        encoder_name=loaded.encoder.name,
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
    items = await _start_items(settings, loaded, stack, store, reindex)
    await reindex.bootstrap(build_if_missing=settings.bootstrap_index)
    await items.replay_served()
    events = backends.events
    if isinstance(events, RedisIndexEvents):
        events.on_resubscribe = reindex.resync  # swaps published while Redis was down are not lost
    await events.start(reindex.on_index_changed)
    stack.push_async_callback(events.close)
    await _share_item_changes(settings, backends, stack, items, worker_id)
    state = _state(settings, loaded, stack, metrics, reindex, worker_id, items)
    health = backends.health
    logger.info(
        "ready: %s, index %s (%d items), %s",
        state.model_name,
        store.snapshot.collection,
        len(store.snapshot),
        ("redis" if health.up else "redis DOWN (degraded)") if health else "in-process cache/lock",
    )
    return state


async def _start_items(
    settings: Settings,
    loaded: _Loaded,
    stack: contextlib.AsyncExitStack,
    store: QdrantStore,
    reindex: ReindexManager,
) -> ItemCatalog:
    """Items API: the durable item log, replayed on top of the served collection at start and into
    every reindex's new collection before the alias swap."""
    assert settings.items.log_path is not None
    item_log = ItemLog(Path(settings.items.log_path))
    await asyncio.to_thread(item_log.load)
    items = ItemCatalog(
        item_log,
        store,
        loaded.artifacts,
        loaded.embed,
        on_snapshot=functools.partial(_refresh_live_caches, loaded.generative),
        compact_superseded_lines=settings.items.compact_superseded_lines,
    )
    stack.push_async_callback(items.close)
    reindex.replay_items = items.replay_into
    reindex.items_lock = items.lock
    return items


async def _share_item_changes(
    settings: Settings, backends: _Backends, stack: contextlib.AsyncExitStack, items: ItemCatalog, worker_id: str
) -> None:
    """With Redis: publish this worker's item changes and apply the other workers'."""
    events = backends.events
    if backends.redis is None or not isinstance(events, RedisIndexEvents):
        return
    item_events = RedisItemEvents(events.client, settings.redis.key_prefix, publisher=backends.redis)

    async def publish_items(collection: str, records: list[dict[str, Any]]) -> None:
        await item_events.publish(ItemsChanged(collection, records, origin=worker_id))

    async def on_items(event: ItemsChanged) -> None:
        if event.origin != worker_id:
            await items.on_remote(event.collection, event.records)

    items.publish = publish_items
    await item_events.start(on_items)
    stack.push_async_callback(item_events.close)


async def _build_reader(
    settings: Settings,
    loaded: _Loaded,
    stack: contextlib.AsyncExitStack,
    metrics: Metrics,
    reader: ReaderStart,
) -> AppState:
    """A reader: the served snapshot comes from the writer's published files."""
    from service.workers import FollowerStore

    store = FollowerStore(settings.qdrant)
    stack.callback(store.close)
    worker_id = _track_index(store, metrics)
    # Never started here: reindex, rollback and the items API run in the writer (readers forward /admin).
    jobs, events = MemoryJobStore(), MemoryIndexEvents()
    reindex = ReindexManager(
        store=store,
        jobs=jobs,
        events=events,
        artifacts=loaded.artifacts,
        embed=loaded.embed,
        encoder_name=loaded.encoder.name,
        worker_id=worker_id,
    )
    await reader(store, loaded.generative, loaded.artifacts, stack)
    state = _state(settings, loaded, stack, metrics, reindex, worker_id, items=None)
    logger.info(
        "reader ready: %s, index %s (%d items) from the writer's published snapshot",
        state.model_name,
        store.snapshot.collection,
        len(store.snapshot),
    )
    return state
