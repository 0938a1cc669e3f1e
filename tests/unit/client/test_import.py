"""recsvc_client imports without torch, numpy or the service (only httpx + the standard library)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

PROBE = """
import sys
import recsvc_client
from recsvc_client import AsyncRecsvcClient, RecsvcClient
RecsvcClient("http://127.0.0.1:1").close()
banned = {"torch", "numpy", "service", "training", "fastapi", "onnxruntime"}
heavy = sorted(m for m in sys.modules if m.split(".")[0] in banned)
print(",".join(heavy))
"""


def test_importing_the_client_loads_no_torch_numpy_or_service() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "", f"recsvc_client pulled in: {out.stdout.strip()}"


def test_client_sources_import_only_httpx_and_stdlib() -> None:
    allowed = set(sys.stdlib_module_names) | {"httpx", "recsvc_client", "__future__"}
    for path in (ROOT / "recsvc_client").glob("*.py"):
        for line in path.read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in ("import", "from") and not line.startswith((" ", "\t")):
                top = words[1].split(".")[0]
                assert top in allowed, f"{path.name}: {line}"
