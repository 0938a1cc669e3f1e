"""`recsvc-serve`: run the API with uvicorn.

    recsvc-serve [--host 127.0.0.1] [--port 8000] [--workers N] [--log-level info]

``--workers`` (default ``RECSVC_WORKERS__COUNT``; 0 = one per core with embedded Qdrant):

- embedded Qdrant (no RECSVC_QDRANT__URL): one writer process owns the Qdrant folder, the
  reindex, the items API and /admin; the others serve reads from the snapshot it publishes and
  forward /admin to it (``service/workers.py``, ``service/supervisor.py``);
- a Qdrant server: uvicorn's workers, which need Redis too (RECSVC_REDIS__URL; otherwise the
  cache, the reindex lock, job state and the alias-moved messages live inside one process).

A start-up failure (configuration, missing or altered artifact set, unreachable
Redis or Qdrant) prints one line ``recsvc-serve: <what is wrong and the fix>``
and exits 2 (1 for an unexpected error); ``--log-level debug`` adds the traceback.
With ``--workers N`` the parent checks the settings and the artifact files'
sha256 before starting workers; failures inside a worker are logged by uvicorn.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
import traceback
from typing import TYPE_CHECKING

from service.api.middleware import install_access_log_redaction
from service.errors import ConfigurationError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from service.config import Settings

logger = logging.getLogger("service.cli")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recsvc-serve", description="Serve the recsvc API with uvicorn.")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes (default RECSVC_WORKERS__COUNT; 0: one per core with embedded Qdrant; "
        "with a Qdrant server >1 needs Redis)",
    )
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--proxy-headers", action="store_true", help="trust X-Forwarded-* from the proxy in front")
    return p


def check_workers(workers: int, *, qdrant_url: str | None, redis_url: str | None) -> str | None:
    """Why ``workers`` processes cannot share this configuration, or None when they can."""
    if workers < 1:
        return "--workers must be at least 1"
    if workers == 1 or not qdrant_url:  # embedded Qdrant: one writer + readers (service/workers.py)
        return None
    reasons = []
    if not redis_url:
        reasons.append(
            "without Redis the cache, reindex lock, job state and alias-moved messages are per process, so "
            "two workers could reindex at once and would not see each other's swaps (set RECSVC_REDIS__URL)"
        )
    if reasons:
        return f"--workers {workers} is unsafe: " + "; ".join(reasons)
    return None


def _one_line(exc: BaseException) -> str:
    """A start-up failure as one line: config errors carry their own message, anything else its type."""
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    if isinstance(exc, ConfigurationError):
        return text
    return f"start-up failed: {exc.__class__.__name__}: {text} (run with --log-level debug for the traceback)"


def _fail(exc: BaseException, debug: bool) -> int:
    """Print the one line (the traceback too at debug level) and give the exit status."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"recsvc-serve: {_one_line(exc)}", file=sys.stderr)
    return 2 if isinstance(exc, ConfigurationError) else 1


def _preflight(settings: Settings) -> None:
    """What can be checked before workers start: the artifact set exists and every file's sha256 holds."""
    from service.artifacts import ArtifactError, verify_artifact_set
    from service.state import Components, resolve_artifact_root

    root = resolve_artifact_root(settings, Components())
    try:
        verify_artifact_set(root)
    except ArtifactError as exc:
        raise ConfigurationError(str(exc)) from exc


def _serve_one(app: FastAPI, args: argparse.Namespace, sockets: list[socket.socket] | None = None) -> None:
    """One worker: the app's lifespan is entered here, before uvicorn binds the port, so a start-up
    failure surfaces as the exception itself (not uvicorn's traceback dump); uvicorn's own shutdown
    (SIGTERM/SIGINT, graceful) closes it, while uvicorn still holds the signals."""
    import uvicorn

    class _Server(uvicorn.Server):
        def __init__(self, config: uvicorn.Config, stack: contextlib.AsyncExitStack) -> None:
            super().__init__(config)
            self._stack = stack

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            await super().shutdown(sockets=sockets)
            logger.info("Waiting for application shutdown.")
            await self._stack.aclose()
            logger.info("Application shutdown complete.")

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        proxy_headers=args.proxy_headers,
        timeout_graceful_shutdown=30,
        lifespan="off",
    )
    install_access_log_redaction()  # after uvicorn configured its loggers

    async def run() -> None:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(app.router.lifespan_context(app))
            await _Server(config, stack).serve(sockets=sockets)

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(run())


def serve(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Requests run concurrently on the event loop and in threads; a BLAS thread pool per process
    # fights them for the cores (small mat-vecs got 10-30x slower under load). Set before numpy loads.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    debug = args.log_level == "debug"
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvicorn

        from service.main import create_app, load_settings
        from service.supervisor import auto_workers, run_workers

        settings = load_settings()
        embedded = not settings.qdrant.url
        workers = args.workers if args.workers is not None else auto_workers(settings.workers.count, embedded)
        problem = check_workers(workers, qdrant_url=settings.qdrant.url, redis_url=settings.redis.url)
        if problem is not None:
            raise ConfigurationError(problem)
        problem = settings.admin_token_problem()
        if problem is not None:
            raise ConfigurationError(
                f"{problem}; set RECSVC_ADMIN_TOKEN to a random secret (e.g. `openssl rand -hex 24`) "
                "or RECSVC_ENABLE_ADMIN=false"
            )
        if workers == 1:
            _serve_one(create_app(settings), args)
            return 0
        _preflight(settings)
        if embedded:
            return run_workers(settings, args, workers)
        uvicorn.run(
            "service.main:app",
            host=args.host,
            port=args.port,
            workers=workers,
            log_level=args.log_level,
            proxy_headers=args.proxy_headers,
            timeout_graceful_shutdown=30,
        )
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        return _fail(exc, debug)


def main() -> None:
    sys.exit(serve())


if __name__ == "__main__":
    main()
