"""The real service in its own process (uvicorn), for fault-injection tests.

Settings come from the ``RECSVC_*`` environment exactly as in production; the only part handed
in is the deterministic ``FakeEncoder`` (the tiny test artifact set's vectors come from it, and
it has no ONNX encoder). Usage: ``python -m tests.integration.serve_fake PORT DIM``.
"""

from __future__ import annotations

import sys

import uvicorn

from service.encoding.fake import FakeEncoder
from service.main import create_app, load_settings
from service.state import Components


def main() -> None:
    port, dim = int(sys.argv[1]), int(sys.argv[2])
    app = create_app(load_settings(), components=Components(encoder=FakeEncoder(dim=dim)))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
