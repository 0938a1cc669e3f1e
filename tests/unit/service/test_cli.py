"""recsvc-serve refuses worker counts the configuration cannot share."""

from __future__ import annotations

import pytest

from service.cli import check_workers, serve


def test_one_worker_always_fine() -> None:
    assert check_workers(1, qdrant_url=None, redis_url=None) is None


def test_many_workers_need_qdrant_server_and_redis() -> None:
    msg = check_workers(4, qdrant_url=None, redis_url=None)
    assert msg is not None and "RECSVC_QDRANT__URL" in msg and "RECSVC_REDIS__URL" in msg
    msg = check_workers(2, qdrant_url="http://q:6333", redis_url=None)
    assert msg is not None and "RECSVC_REDIS__URL" in msg and "QDRANT" not in msg
    assert check_workers(2, qdrant_url="http://q:6333", redis_url="redis://r") is None
    assert check_workers(0, qdrant_url=None, redis_url=None) is not None


def test_serve_exits_2_with_an_explanation(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("RECSVC_QDRANT__URL", raising=False)
    monkeypatch.delenv("RECSVC_REDIS__URL", raising=False)
    assert serve(["--workers", "3"]) == 2
    assert "embedded Qdrant" in capsys.readouterr().err


def test_serve_refuses_placeholder_token(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RECSVC_ADMIN_TOKEN", "changeme")
    monkeypatch.setenv("RECSVC_ENABLE_ADMIN", "true")
    assert serve([]) == 2
    assert "RECSVC_ADMIN_TOKEN" in capsys.readouterr().err
