"""Serve the tests' tiny artifact set through ``recsvc-serve``'s one-worker path in a real process.

    python -m tests.api.serve_tiny --artifacts-root DIR --data-dir DIR --port N [--log-level info]

The tiny set's encoder is the deterministic ``FakeEncoder`` (its ONNX files are placeholders), so
the app is built with it injected; everything else (settings from the environment, uvicorn, the
lifespan, signals, the access log) is what ``recsvc-serve`` runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--artifacts-root", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log-level", default="info")
    args = p.parse_args()

    import logging

    from pydantic import SecretStr

    from service.cli import _fail, _serve_one
    from service.config import Settings
    from service.encoding.fake import FakeEncoder
    from service.main import create_app
    from service.state import Components
    from tests.conftest import ADMIN_TOKEN, TEXT_DIM

    logging.basicConfig(level=args.log_level.upper())
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=args.data_dir,
        artifacts_dir=args.artifacts_root.parent,
        admin_token=SecretStr(ADMIN_TOKEN),
        encoder_variant="fp32",
        device="cpu",
        qdrant={"path": str(args.data_dir / "qdrant")},  # type: ignore[arg-type]
    )
    app = create_app(
        settings, components=Components(encoder=FakeEncoder(dim=TEXT_DIM), artifacts_root=args.artifacts_root)
    )
    ns = argparse.Namespace(host="127.0.0.1", port=args.port, log_level=args.log_level, proxy_headers=False)
    try:
        _serve_one(app, ns)
    except Exception as exc:
        return _fail(exc, args.log_level == "debug")
    return 0


if __name__ == "__main__":
    sys.exit(main())
