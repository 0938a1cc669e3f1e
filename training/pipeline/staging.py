"""Where a build writes: a hidden staging folder renamed to ``<out>/<version>`` only when complete (so a
crash never leaves a half-built version that the service would pick up), then ``LATEST`` pointed at it;
and the per-stage timer whose figures land in the manifest."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger(__name__)


def version_name(dataset_name: str) -> str:
    """``<UTC stamp>-<dataset name>`` with anything but letters, digits, ``-`` and ``_`` replaced."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in dataset_name) or "data"
    return f"{stamp}-{safe}"


class Stages:
    """Times each stage and logs one line when it starts and one when it ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def run(self, name: str) -> Iterator[None]:
        n = len(self.seconds) + 1
        logger.info("stage %d: %s ...", n, name)
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.seconds[name] = round(dt, 2)
        logger.info("stage %d: %s done in %.1fs", n, name, dt)


@contextmanager
def staged_version(out_root: Path, version: str) -> Iterator[Path]:
    """Yield an empty staging folder for ``version``; on success rename it to ``out_root/version`` and
    write ``out_root/LATEST``, on any error remove it. An existing version is never overwritten."""
    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / version
    if final.exists():
        raise FileExistsError(f"artifact version {version!r} already exists at {final}")
    staging = out_root / f".{version}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        yield staging
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (out_root / "LATEST").write_text(version + "\n")
