"""Make the virtualenv the load benchmark runs its peer (infinity-emb) from.

    python -m benchmarks.peer_venv [--venv var/bench-venv]

infinity-emb 0.0.78 pins numpy<2, uvicorn<0.33 and sentence-transformers<4 (so transformers<5),
which our environment does not satisfy, so it gets a virtualenv of its own: the requirements of
the ``bench`` extra in pyproject.toml that name infinity-emb, plus the torch build this
environment runs (so both systems use the same torch). ``benchmarks.load`` finds
``var/bench-venv/bin/python`` by itself (or ``--infinity-python`` / ``$RECSVC_BENCH_INFINITY_PYTHON``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def peer_requirements(pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """The ``bench`` extra's requirements that belong in the peer venv (infinity-emb and its pins)."""
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    reqs = [r for r in extras.get("bench", []) if "infinity" in r or "optimum" in r]
    if not reqs:
        raise SystemExit(f"{pyproject}: the bench extra names no infinity-emb requirement")
    return reqs


def torch_requirement() -> str | None:
    """``torch==X`` of this environment (the CPU build here), or None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return f"torch=={torch.__version__.split('+')[0]}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="create the virtualenv of the load benchmark's peers")
    ap.add_argument("--venv", type=Path, default=Path("var/bench-venv"))
    args = ap.parse_args(argv)
    python = args.venv / "bin" / "python"
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(args.venv)
    reqs = peer_requirements()
    torch_req = torch_requirement()
    cmd = [str(python), "-m", "pip", "install", *([torch_req] if torch_req else []), *reqs]
    print(" ".join(cmd), file=sys.stderr)
    rc = subprocess.call(cmd)
    if rc == 0:
        print(f"peer venv ready: {python} (benchmarks.load finds it there)", file=sys.stderr)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
