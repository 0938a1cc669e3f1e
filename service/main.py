"""App factory and lifespan; nothing else.

``uvicorn service.main:app`` builds the app from the environment on first
access of ``app`` (so importing :func:`create_app` never needs a token or
artifacts); the heavy state is built in the lifespan, which fails with a
message naming the command to run when there is nothing to serve.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from pydantic import ValidationError

from service.api import admin, embed, health, recommend
from service.api.deadline import RequestDeadlineMiddleware
from service.api.metrics import Metrics, MetricsMiddleware
from service.api.middleware import BodySizeLimitMiddleware
from service.config import Settings
from service.errors import ConfigurationError, install_error_handlers
from service.state import Components, build_state

logger = logging.getLogger(__name__)

API_VERSION = "0.1.0"

# Declared, not assigned: the first access goes through the module __getattr__ below.
app: FastAPI


def load_settings() -> Settings:
    """Settings from the environment, with validation errors naming the variables to fix."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            var = "RECSVC_" + "__".join(str(p) for p in err.get("loc", ())).upper()
            lines.append(f"  {var}: {err.get('msg')}")
        raise ConfigurationError("invalid configuration:\n" + "\n".join(lines)) from exc


def _configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("service").setLevel(level)


def create_app(settings: Settings | None = None, *, components: Components | None = None) -> FastAPI:
    settings = settings if settings is not None else load_settings()
    problem = settings.admin_token_problem()
    if problem is not None:
        raise ConfigurationError(
            f"{problem}: admin routes need a secret token. Set RECSVC_ADMIN_TOKEN to a random value "
            "(e.g. `openssl rand -hex 24`) or disable them with RECSVC_ENABLE_ADMIN=false"
        )
    _configure_logging(settings.log_level)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await build_state(settings, components, metrics)
        app.state.recsvc = state
        try:
            yield
        finally:
            app.state.recsvc = None
            await state.close()

    app = FastAPI(
        title="recsvc",
        version=API_VERSION,
        summary="Recommendations grounded in item text: embed items, recommend from histories, reindex.",
        lifespan=lifespan,
    )
    app.state.recsvc = None
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app)
    app.include_router(embed.router)
    app.include_router(recommend.router)
    if settings.enable_admin:
        app.include_router(admin.router)
    app.include_router(health.router)

    # Added innermost first: metrics sees every request, including 413s from the size limit.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.limits.max_request_bytes)
    # Deadlines + disconnect cancellation (outside the size limit, inside metrics: 499/504 are counted).
    app.add_middleware(RequestDeadlineMiddleware, settings=settings.deadlines, on_abandoned=metrics.on_abandoned)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def __getattr__(name: str) -> Any:
    # `service.main:app` for uvicorn, built on first access from the environment.
    if name == "app":
        global app
        app = create_app()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
