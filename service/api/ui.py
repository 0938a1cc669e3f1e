"""GET /ui: the demo page, served from static files in ``service/static/ui/`` (plain HTML, JS and
CSS: no build step, no CDN, works offline).

The page calls the public API from the browser (``/search``, ``/recommend``, ``/embed``,
``/admin/reindex`` with a token typed into the page and never stored) and
``/ui/config.json`` for what this worker serves (modes, versions, limits), so it never
sends a request it knows will fail. A strict Content-Security-Policy allows only this
origin: nothing is fetched from elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse

from service.deps import StateDep
from service.errors import ServiceError

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "ui"
# Served files and their media types; anything else is a 404 (no directory listing, no traversal).
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


class AssetNotFoundError(ServiceError):
    status_code = 404
    code = "not_found"


@router.get("/ui")
async def ui_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(url=str(request.url_for("ui_page")), status_code=307)


@router.get("/ui/", name="ui_page")
async def ui_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/ui/config.json")
async def ui_config(state: StateDep) -> dict[str, Any]:
    """What this worker serves, for the page: modes, versions, admin routes, limits."""
    limits = state.settings.limits
    return {
        "modes": list(state.recommender.available_modes),
        "model_version": state.model_version,
        "model": state.model_name,
        "index_version": state.store.snapshot.collection if state.store.has_snapshot else None,
        "items": len(state.store.snapshot) if state.store.has_snapshot else 0,
        "admin": state.settings.enable_admin,
        "max_k": limits.max_k,
    }


@router.get("/ui/{name}")
async def ui_asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise AssetNotFoundError(f"no file {name!r} in the demo page")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=HEADERS)
