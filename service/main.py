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
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from service.api import admin, embed, health, items, openai_compat, recommend, search, ui
from service.api.deadline import RequestDeadlineMiddleware
from service.api.metrics import Metrics, MetricsMiddleware
from service.api.middleware import BodySizeLimitMiddleware, install_access_log_redaction
from service.config import Settings
from service.errors import ConfigurationError, document_errors, error_responses, install_error_handlers
from service.logging_setup import RequestIdMiddleware, configure_logging
from service.state import Components, build_state
from service.workers import ForwardToWriter, ProcessRole, WriterLink, reader_start, start_publisher

logger = logging.getLogger(__name__)

API_VERSION = "0.1.0"

# Swagger UI 5 and ReDoc files, served by the service itself so /docs works offline (no CDN).
DOCS_ASSETS_URL = "/static/docs"


def docs_assets_dir() -> Path:
    """Folder of the Swagger UI / ReDoc files (shipped by the ``fastapi-offline`` package)."""
    return Path(str(resources.files("fastapi_offline") / "static"))


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


def create_app(
    settings: Settings | None = None, *, components: Components | None = None, role: ProcessRole | None = None
) -> FastAPI:
    """``role``: this process's place in the embedded multi-process mode (``service/workers.py``): the
    writer publishes its served snapshot, a reader serves the published one and forwards /admin."""
    settings = settings if settings is not None else load_settings()
    problem = settings.admin_token_problem()
    if problem is not None:
        raise ConfigurationError(
            f"{problem}: admin routes need a secret token. Set RECSVC_ADMIN_TOKEN to a random value "
            "(e.g. `openssl rand -hex 24`) or disable them with RECSVC_ENABLE_ADMIN=false"
        )
    _configure_logging(settings.log_level)
    configure_logging(settings.log_format)
    metrics = Metrics()
    link = (
        WriterLink(role.writer_socket, role.forward_timeout_s) if role is not None and role.kind == "reader" else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if role is not None and role.kind == "reader":
            state = await build_state(settings, components, metrics, reader=reader_start(role))
        else:
            state = await build_state(settings, components, metrics)
        if role is not None and role.kind == "writer":
            try:
                await start_publisher(state, role)
            except BaseException:
                await state.close()
                raise
        app.state.recsvc = state
        try:
            yield
        finally:
            app.state.recsvc = None
            await state.close()
            if link is not None:
                await link.aclose()

    app = FastAPI(
        title="recsvc",
        version=API_VERSION,
        summary="Recommendations grounded in item text: embed items, recommend from histories, reindex.",
        description="Every 4xx and 5xx answer has one body: `ErrorResponse`, "
        '`{"error": {"code": ..., "message": ..., "details": ...}}`.',
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.recsvc = None
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.role = role
    install_error_handlers(app)
    install_access_log_redaction()
    # Declared per router; document_errors adds what follows from each route's shape (422 for
    # parameters, 413/415 for bodies, 404 for path ids, 500 everywhere) and replaces FastAPI's 422.
    app.include_router(embed.router, responses=error_responses(503))
    app.include_router(recommend.router, responses=error_responses(503))
    app.include_router(search.router, responses=error_responses(503))
    app.include_router(openai_compat.router)
    app.include_router(ui.router)
    if settings.enable_admin:
        app.include_router(admin.router, responses=error_responses(401, 409, 503))
        app.include_router(items.router, responses=error_responses(401, 413, 503))
    app.include_router(health.router)
    _install_docs(app)

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
    if link is not None:  # a reader: /admin goes to the writer (counted there, not here)
        app.add_middleware(ForwardToWriter, link=link, max_bytes=settings.limits.max_request_bytes)
    # Outermost: every response (413s, errors) carries the request id, every log line of the request names it.
    app.add_middleware(RequestIdMiddleware, access_log=settings.access_log)
    return app


def _install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI), /redoc and /openapi.json with error bodies documented, assets served locally."""
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=docs_assets_dir()), name="docs-assets")
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )


def __getattr__(name: str) -> Any:
    # `service.main:app` for uvicorn, built on first access from the environment.
    if name == "app":
        global app
        app = create_app()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
