"""The artifact set the service benchmarks serve: the one given, the repo's ``artifacts/``, or a small
demo set built once into ``var/bench-demo`` (or a temporary folder that goes away afterwards).

The small set is the demo shop (``training.data.demo``) at a reduced size, built by the real
``recsvc-train build`` (encoder export with int8, torch item vectors, a short seqrec run with the
transition prior), so the service under load runs exactly the code ``make demo`` serves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_CACHE = Path("var/bench-demo")
SMALL_DEMO: dict[str, float] = {"items": 1200, "users": 2500, "seqrec_minutes": 1.0, "seqrec_epochs": 6}


def find_set(path: Path) -> Path | None:
    """The artifact set at ``path``: the folder itself when it holds ``manifest.json``, else its
    latest set (``LATEST`` or newest); None when there is none."""
    from service.core.manifest import ManifestError, latest_version

    path = path.resolve()  # servers run from other folders
    if (path / "manifest.json").is_file():
        return path
    if not path.is_dir():
        return None
    try:
        root = latest_version(path)
    except (ManifestError, OSError):
        return None
    return root if (root / "manifest.json").is_file() else None


def build_small_demo(
    out: Path, *, timeout_s: float = 1800, threads: int = 2, sizes: dict[str, float] | None = None
) -> Path:
    """Generate the small demo shop and build its artifact set under ``out/artifacts`` (child processes:
    the encoder export must not share a process with other torch work); the set's folder.
    ``sizes`` overrides entries of ``SMALL_DEMO`` (items, users, seqrec_minutes, seqrec_epochs)."""
    size = {**SMALL_DEMO, **(sizes or {})}
    data = out / "data"
    artifacts = out / "artifacts"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    steps = [
        [sys.executable, "-m", "training.data.demo", "--out", str(data),
         "--items", str(int(size["items"])), "--users", str(int(size["users"]))],
        [sys.executable, "-m", "training.cli", "build", "--data", str(data), "--out", str(artifacts),
         "--name", "benchdemo", "--no-push", "--threads", str(threads),
         "--seqrec-minutes", str(size["seqrec_minutes"]), "--seqrec-epochs", str(int(size["seqrec_epochs"]))],
    ]  # fmt: skip
    t0 = time.monotonic()
    for cmd in steps:
        left = timeout_s - (time.monotonic() - t0)
        logger.info("building the benchmark demo set: %s", " ".join(cmd[1:4]))
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=max(left, 1), check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[1:4])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    root = find_set(artifacts)
    if root is None:
        raise RuntimeError(f"the demo build wrote no artifact set under {artifacts}")
    logger.info("demo set %s built in %.0fs", root.name, time.monotonic() - t0)
    return root


@contextlib.contextmanager
def artifact_set(given: Path | None, *, cache: Path | None = DEFAULT_CACHE, threads: int = 2) -> Iterator[Path]:
    """The set to serve: ``given`` (a set or an artifacts folder; built there when it holds none), else
    ``artifacts/`` when it holds a set, else the small demo under ``cache`` (built on first use and
    kept), else (``cache`` None) a small demo in a temporary folder removed on exit."""
    if given is not None:
        root = find_set(given)
        if root is None:
            logger.info("%s holds no artifact set: building the small demo set there", given)
            root = build_small_demo(given, threads=threads)
        yield root
        return
    root = find_set(Path("artifacts"))
    if root is not None:
        yield root
        return
    if cache is not None:
        root = find_set(cache / "artifacts")
        yield root if root is not None else build_small_demo(cache, threads=threads)
        return
    with tempfile.TemporaryDirectory(prefix="recsvc-bench-demo-") as tmp:
        yield build_small_demo(Path(tmp), threads=threads)
