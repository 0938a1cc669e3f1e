"""A real HTTP server for tests that need one: the app under uvicorn on a free loopback port.

Clients that open their own connections (the ``openai`` client, ``recsvc_client``, a browser)
talk to it over TCP like they would to a deployed service; the app is the one ``create_app``
builds, with the tiny real artifact set and the deterministic encoder of ``tests/conftest.py``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.conftest import TEXT_DIM


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_app(app: Any, *, startup_timeout: float = 60.0) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread (lifespan included); yield its base URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn exited during startup (see the log above)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"uvicorn did not start within {startup_timeout} s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


LiveFactory = Callable[..., str]


@pytest.fixture
def live_service(make_settings: Callable[..., Any]) -> Iterator[LiveFactory]:
    """``live_service(**settings_overrides)`` -> base URL of a started service (stopped at teardown)."""
    from contextlib import ExitStack

    from service.encoding.fake import FakeEncoder
    from service.main import create_app
    from service.state import Components

    with ExitStack() as stack:

        def _start(**overrides: Any) -> str:
            app = create_app(make_settings(**overrides), components=Components(encoder=FakeEncoder(dim=TEXT_DIM)))
            return stack.enter_context(serve_app(app))

        yield _start
