"""Tests write only to temporary folders: a snapshot of the checkout before and after the session.

Any file created or deleted anywhere in the checkout, or changed under ``var/``, ``artifacts/`` or
``docs/`` (where jobs write by default: a test that forgets to pass its own output folder lands
there, over a user's files), fails the session. Tool caches (``.pytest_cache``, ``__pycache__``,
``.hypothesis``, ``.mypy_cache``, ``.ruff_cache``), ``.git`` and ``.venv`` are not watched; edits
to existing source files are not counted (someone may be editing while the tests run).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UNWATCHED_DIRS = frozenset(
    {".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", "node_modules"}
)
WATCHED_FOR_CHANGES = ("var", "artifacts", "docs")

Snapshot = dict[str, tuple[int, int]]


def snapshot(root: Path = REPO) -> Snapshot:
    """Relative path -> (mtime_ns, size) of every file under ``root`` outside the unwatched folders."""
    out: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in UNWATCHED_DIRS and not d.endswith(".egg-info")]
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                continue
            out[os.path.relpath(path, root)] = (st.st_mtime_ns, st.st_size)
    return out


def repo_writes(before: Snapshot, after: Snapshot) -> list[str]:
    """What changed between two snapshots, as ``created: p`` / ``deleted: p`` / ``changed: p`` lines."""
    lines = [f"created: {p}" for p in sorted(set(after) - set(before))]
    lines += [f"deleted: {p}" for p in sorted(set(before) - set(after))]
    lines += [
        f"changed: {p}"
        for p in sorted(set(before) & set(after))
        if before[p] != after[p] and Path(p).parts[0] in WATCHED_FOR_CHANGES
    ]
    return lines
