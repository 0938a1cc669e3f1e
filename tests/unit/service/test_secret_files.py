"""Token files are readable by their owner only (0600), whatever the caller's umask."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_admin_token_is_0600(tmp_path: Path) -> None:
    token = tmp_path / "var" / "admin-token"

    def make() -> None:
        subprocess.run(
            ["make", "-s", "-C", str(REPO), "admin-token", f"ADMIN_TOKEN_FILE={token}"],
            check=True,
            capture_output=True,
            preexec_fn=lambda: os.umask(0o022),  # a common umask: new files 0644 by default
        )

    make()
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    secret = token.read_text()
    assert len(secret) >= 24 and secret.isalnum()
    token.chmod(0o644)  # made world-readable by an older Makefile: fixed, kept
    make()
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and token.read_text() == secret
