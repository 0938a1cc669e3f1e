"""The session guard sees files a test writes into the checkout."""

from __future__ import annotations

import os
from pathlib import Path

from tests.repo_guard import repo_writes, snapshot


def test_guard_reports_created_deleted_and_changed_files(tmp_path: Path) -> None:
    for rel in ("var/models/demo/a.pt", "docs/RESULTS.md", "service/x.py", "keep.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("v1")
    (tmp_path / ".pytest_cache").mkdir()
    before = snapshot(tmp_path)
    assert repo_writes(before, snapshot(tmp_path)) == []
    (tmp_path / "var/models/demo/b.pt").write_text("new")
    (tmp_path / "docs/RESULTS.md").write_text("v2, longer")
    os.utime(tmp_path / "var/models/demo/a.pt", ns=(1, 1))  # rewritten with the same size
    (tmp_path / "service/x.py").write_text("edited by a person")  # source edits are not counted
    (tmp_path / "keep.txt").unlink()
    (tmp_path / ".pytest_cache" / "v").write_text("tool cache")  # not watched
    assert repo_writes(before, snapshot(tmp_path)) == [
        "created: var/models/demo/b.pt",
        "deleted: keep.txt",
        "changed: docs/RESULTS.md",
        "changed: var/models/demo/a.pt",
    ]
