"""`recsvc-serve`: run the API with uvicorn.

    recsvc-serve [--host 127.0.0.1] [--port 8000] [--workers 1] [--log-level info] [--reload]

More than one worker needs state every worker can share: a Qdrant server
(RECSVC_QDRANT__URL; embedded Qdrant is a folder that one process locks) and
Redis (RECSVC_REDIS__URL; otherwise the cache, the reindex lock, job state and
the alias-moved messages live inside one process).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from service.errors import ConfigurationError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recsvc-serve", description="Serve the recsvc API with uvicorn.")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (>1 needs Qdrant server + Redis)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--proxy-headers", action="store_true", help="trust X-Forwarded-* from the proxy in front")
    return p


def check_workers(workers: int, *, qdrant_url: str | None, redis_url: str | None) -> str | None:
    """Why ``workers`` processes cannot share this configuration, or None when they can."""
    if workers < 1:
        return "--workers must be at least 1"
    if workers == 1:
        return None
    reasons = []
    if not qdrant_url:
        reasons.append("embedded Qdrant is a folder locked by one process (set RECSVC_QDRANT__URL to a Qdrant server)")
    if not redis_url:
        reasons.append(
            "without Redis the cache, reindex lock, job state and alias-moved messages are per process, so "
            "two workers could reindex at once and would not see each other's swaps (set RECSVC_REDIS__URL)"
        )
    if reasons:
        return f"--workers {workers} is unsafe: " + "; ".join(reasons)
    return None


def serve(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Requests run concurrently on the event loop and in threads; a BLAS thread pool per process
    # fights them for the cores (small mat-vecs got 10-30x slower under load). Set before numpy loads.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import uvicorn

    from service.main import load_settings

    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(f"recsvc-serve: {exc}", file=sys.stderr)
        return 2
    problem = check_workers(args.workers, qdrant_url=settings.qdrant.url, redis_url=settings.redis.url)
    if problem is not None:
        print(f"recsvc-serve: {problem}", file=sys.stderr)
        return 2
    problem = settings.admin_token_problem()
    if problem is not None:
        print(
            f"recsvc-serve: {problem}; set RECSVC_ADMIN_TOKEN to a random secret (e.g. `openssl rand -hex 24`) "
            "or RECSVC_ENABLE_ADMIN=false",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        "service.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        proxy_headers=args.proxy_headers,
        timeout_graceful_shutdown=30,
    )
    return 0


def main() -> None:
    sys.exit(serve())


if __name__ == "__main__":
    main()
