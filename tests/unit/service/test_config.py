"""Settings from the environment: prefix, nested delimiter, defaults, clear validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from service.config import Settings
from service.errors import ConfigurationError
from service.main import create_app, load_settings


def test_env_prefix_and_nested_delimiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSVC_QDRANT__URL", "http://qdrant:6333")
    monkeypatch.setenv("RECSVC_REDIS__URL", "redis://redis:6379/0")
    monkeypatch.setenv("RECSVC_LIMITS__MAX_K", "50")
    monkeypatch.setenv("RECSVC_DEVICE", "cpu")
    monkeypatch.setenv("RECSVC_ADMIN_TOKEN", "s3cret-s3cret-s3cret")
    monkeypatch.setenv("RECSVC_LOG_LEVEL", "debug")
    monkeypatch.setenv("RECSVC_CORS_ORIGINS", '["https://a.example"]')
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.qdrant.url == "http://qdrant:6333" and s.qdrant.path is None
    assert s.redis.url == "redis://redis:6379/0"
    assert s.limits.max_k == 50 and s.limits.max_embed_items == 256
    assert s.device == "cpu" and s.log_level == "DEBUG"
    assert s.cors_origins == ["https://a.example"]
    assert s.admin_token is not None and s.admin_token.get_secret_value() == "s3cret-s3cret-s3cret"
    assert "s3cret" not in repr(s)  # secrets never print
    assert s.multi_worker_safe


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(__import__("os").environ):
        if k.startswith("RECSVC_"):
            monkeypatch.delenv(k)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.data_dir == Path("var") and s.artifacts_dir == Path("artifacts")
    assert s.qdrant.url is None and s.qdrant.path == str(Path("var") / "qdrant")
    assert s.qdrant.alias == "items" and s.redis.cache_ttl_s == 300 and s.redis.key_prefix == "recsvc"
    assert (s.batcher.max_batch, s.batcher.max_wait_ms, s.batcher.pipeline) == (64, 0, True)
    assert (s.batcher.max_queue_texts, s.batcher.max_interactive_queue_texts) == (512, 256)
    assert not s.onnx.spinning and s.deadlines.default_timeout_ms == 30_000
    assert (s.limits.max_text_chars, s.limits.max_history, s.limits.max_request_bytes) == (10000, 200, 1_000_000)
    assert s.encoder_variant == "int8" and s.device == "auto" and s.enable_admin
    assert not s.multi_worker_safe


def test_invalid_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSVC_DEVICE", "tpu")
    monkeypatch.setenv("RECSVC_LIMITS__MAX_K", "0")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    msg = str(info.value)
    assert "RECSVC_DEVICE" in msg and "RECSVC_LIMITS__MAX_K" in msg


@pytest.mark.parametrize("token", [None, "", "   ", "changeme", "CHANGEME", "short"])
def test_admin_routes_refuse_a_default_or_empty_token(token: str | None) -> None:
    s = Settings(_env_file=None, admin_token=None if token is None else SecretStr(token))  # type: ignore[call-arg]
    assert s.admin_token_problem() is not None
    with pytest.raises(ConfigurationError, match="RECSVC_ADMIN_TOKEN"):
        create_app(s)


def test_no_token_needed_without_admin_routes() -> None:
    s = Settings(_env_file=None, admin_token=None, enable_admin=False)  # type: ignore[call-arg]
    assert s.admin_token_problem() is None
    app = create_app(s)  # builds without artifacts: the heavy state is built in the lifespan
    assert not any(getattr(r, "path", "").startswith("/admin") for r in app.routes)


def test_module_app_is_lazy() -> None:
    import service.main as main

    assert "app" not in vars(main)  # importing the module built nothing


@pytest.mark.parametrize(
    "bad", ["../../x", "..", "/etc", "a/b", "a\\b", "../20260101-000000-tiny", "x/../y", ".hidden", "a b", "v\n"]
)
def test_artifact_version_is_a_plain_name(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("RECSVC_ARTIFACT_VERSION", bad)
    with pytest.raises(ConfigurationError, match=r"RECSVC_ARTIFACT_VERSION: .*plain name of a folder inside"):
        load_settings()


def test_artifact_version_names_that_are_fine() -> None:
    for good in ("20260101-000000-demo", "demo-profile", "v1.2_rc"):
        assert Settings(_env_file=None, artifact_version=good).artifact_version == good  # type: ignore[call-arg]
    assert Settings(_env_file=None, artifact_version="").artifact_version is None  # type: ignore[call-arg]


def test_latest_pointing_outside_the_artifacts_folder_is_refused(tmp_path: Path) -> None:
    from service.state import Components, resolve_artifact_root

    base = tmp_path / "artifacts"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "manifest.json").write_text("{}")
    base.mkdir()
    (base / "LATEST").write_text("../elsewhere\n")
    settings = Settings(_env_file=None, artifacts_dir=base)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="not a folder directly inside RECSVC_ARTIFACTS_DIR"):
        resolve_artifact_root(settings, Components())
    (base / "LATEST").write_text(f"{outside}\n")
    with pytest.raises(ConfigurationError, match="not a folder directly inside"):
        resolve_artifact_root(settings, Components())
    (base / "v1").mkdir()
    (base / "v1" / "manifest.json").write_text("{}")
    (base / "LATEST").write_text("v1\n")
    assert resolve_artifact_root(settings, Components()) == base / "v1"
