"""Annotated dependencies for the routes."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.middleware import has_secret_param
from service.errors import NotReadyError, UnauthorizedError
from service.state import AppState

_bearer = HTTPBearer(auto_error=False, description="Admin token (RECSVC_ADMIN_TOKEN).")


def get_state(request: Request) -> AppState:
    state: AppState | None = getattr(request.app.state, "recsvc", None)
    if state is None or not state.ready:
        raise NotReadyError("the service is starting or stopping; retry shortly")
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def require_admin(
    request: Request,
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Bearer token check in constant time (``secrets.compare_digest`` on bytes).

    A token in the URL (``?token=...``) is refused whatever its value: URLs end up in access logs,
    proxies and browser history (the access log redacts it, see ``RedactSecretsFilter``)."""
    token = state.settings.admin_token
    if token is None:  # create_app refuses to start admin routes without a token; defence in depth
        raise UnauthorizedError("admin routes are not configured")
    in_url = has_secret_param(list(request.query_params.keys()))
    if in_url:
        raise UnauthorizedError(
            f"credentials in the URL are refused (query parameter {in_url[0]!r}): send the header "
            "`Authorization: Bearer <token>` instead, and treat that token as leaked if it was real",
            {"parameters": in_url},
        )
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise UnauthorizedError("missing bearer token")
    given = credentials.credentials.encode("utf-8")
    expected = token.get_secret_value().strip().encode("utf-8")
    if not secrets.compare_digest(given, expected):
        raise UnauthorizedError("invalid bearer token")


AdminDep = Depends(require_admin)
