"""recsvc-serve refuses worker counts the configuration cannot share; start-up failures are one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import check_workers, serve
from tests.conftest import ADMIN_TOKEN, TinyArtifacts

REPO = Path(__file__).resolve().parents[3]


def test_one_worker_always_fine() -> None:
    assert check_workers(1, qdrant_url=None, redis_url=None) is None


def test_many_workers_with_a_qdrant_server_need_redis() -> None:
    # embedded Qdrant: one writer + readers (service/workers.py), with or without Redis
    assert check_workers(4, qdrant_url=None, redis_url=None) is None
    assert check_workers(2, qdrant_url=None, redis_url="redis://r") is None
    msg = check_workers(2, qdrant_url="http://q:6333", redis_url=None)
    assert msg is not None and "RECSVC_REDIS__URL" in msg and "QDRANT" not in msg
    assert check_workers(2, qdrant_url="http://q:6333", redis_url="redis://r") is None
    assert check_workers(0, qdrant_url=None, redis_url=None) is not None


def test_serve_exits_2_with_an_explanation(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RECSVC_QDRANT__URL", "http://127.0.0.1:1")
    monkeypatch.delenv("RECSVC_REDIS__URL", raising=False)
    assert serve(["--workers", "3"]) == 2
    assert "RECSVC_REDIS__URL" in capsys.readouterr().err


def test_auto_workers() -> None:
    from service.supervisor import auto_workers, threads_per_process

    cpus = os.cpu_count() or 1
    assert auto_workers(3, embedded=True) == 3 and auto_workers(3, embedded=False) == 3
    assert auto_workers(0, embedded=True) == cpus
    assert auto_workers(0, embedded=False) == 1  # uvicorn's workers with a Qdrant server need Redis too
    assert threads_per_process(4, 2) == 4
    assert threads_per_process(0, 1) == cpus
    assert threads_per_process(0, 64) == 1


def test_embedded_workers_check_the_artifacts_before_starting(tiny_artifacts: TinyArtifacts, tmp_path: Path) -> None:
    res = _run_cli({"RECSVC_ARTIFACTS_DIR": str(_tampered_set(tiny_artifacts, tmp_path))}, tmp_path, "--workers", "2")
    assert res.returncode == 2
    assert len(_lines(res.stderr)) == 1 and "does not match its sha256" in res.stderr, res.stderr


def test_serve_refuses_placeholder_token(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RECSVC_ADMIN_TOKEN", "changeme")
    monkeypatch.setenv("RECSVC_ENABLE_ADMIN", "true")
    assert serve([]) == 2
    assert "RECSVC_ADMIN_TOKEN" in capsys.readouterr().err


# ---------------------------------------------------------------- start-up failures, in a real process
def _run_cli(env_extra: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSVC_")}
    env.update({"PYTHONPATH": str(REPO), "RECSVC_ADMIN_TOKEN": ADMIN_TOKEN, "RECSVC_DATA_DIR": str(cwd / "var")})
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "--port", "1", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _tampered_set(tiny: TinyArtifacts, tmp_path: Path) -> Path:
    """A copy of the tiny set whose int8 ONNX file no longer matches its sha256."""
    base = tmp_path / "artifacts"
    shutil.copytree(tiny.artifacts_dir, base)
    with (base / tiny.version / "encoder" / "encoder.int8.onnx").open("ab") as f:
        f.write(b"tampered")
    return base


def test_config_error_is_one_line(tmp_path: Path) -> None:
    res = _run_cli({"RECSVC_ARTIFACT_VERSION": "../../x"}, tmp_path)
    assert res.returncode == 2
    lines = _lines(res.stderr)
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("recsvc-serve: invalid configuration: RECSVC_ARTIFACT_VERSION")
    assert "plain name of a folder inside RECSVC_ARTIFACTS_DIR" in lines[0]


def test_missing_artifact_set_is_one_line(tmp_path: Path) -> None:
    res = _run_cli({"RECSVC_ARTIFACTS_DIR": str(tmp_path / "nothing")}, tmp_path)
    assert res.returncode == 2
    assert _lines(res.stderr) == [
        f"recsvc-serve: no artifact set to serve under {tmp_path / 'nothing'}: run `make demo-build` (demo data) "
        "or `recsvc-train build --data DIR` first, or point RECSVC_ARTIFACTS_DIR at a built set"
    ]


def test_altered_artifact_is_one_line_and_checked_before_loading(tiny_artifacts: TinyArtifacts, tmp_path: Path) -> None:
    """The int8 ONNX file is refused for its sha256, not handed to onnxruntime (which would fail to parse it)."""
    base = _tampered_set(tiny_artifacts, tmp_path)
    res = _run_cli({"RECSVC_ARTIFACTS_DIR": str(base)}, tmp_path)
    assert res.returncode == 2
    lines = _lines(res.stderr)
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "artifact file does not match its sha256: encoder/encoder.int8.onnx" in lines[0]
    # the traceback is there at debug level, the one line still last
    res = _run_cli({"RECSVC_ARTIFACTS_DIR": str(base)}, tmp_path, "--log-level", "debug")
    assert res.returncode == 2 and "Traceback" in res.stderr
    assert "does not match its sha256" in _lines(res.stderr)[-1]


def test_many_workers_check_the_artifacts_before_starting(tiny_artifacts: TinyArtifacts, tmp_path: Path) -> None:
    base = _tampered_set(tiny_artifacts, tmp_path)
    env = {
        "RECSVC_ARTIFACTS_DIR": str(base),
        "RECSVC_QDRANT__URL": "http://127.0.0.1:1",
        "RECSVC_REDIS__URL": "redis://127.0.0.1:1",
    }
    res = _run_cli(env, tmp_path, "--workers", "2")
    assert res.returncode == 2
    assert len(_lines(res.stderr)) == 1 and "does not match its sha256" in res.stderr, res.stderr
