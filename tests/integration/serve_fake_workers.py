"""``recsvc-serve --workers N`` (embedded multi-process mode) on the tiny test artifact set.

The parent is the real supervisor; each child is the real ``child_main`` handed the deterministic
``FakeEncoder`` (the tiny set's vectors come from it; it has no ONNX encoder), as ``serve_fake`` does
for one process. Usage: ``python -m tests.integration.serve_fake_workers PORT WORKERS DIM``, or
``... child DIM <child arguments>`` (what the supervisor starts).
"""

from __future__ import annotations

import argparse
import logging
import sys

from service.encoding.fake import FakeEncoder
from service.main import load_settings
from service.state import Components
from service.supervisor import child_main, run_workers


def main() -> int:
    if sys.argv[1] == "child":
        dim = int(sys.argv[2])
        return child_main(sys.argv[3:], components=Components(encoder=FakeEncoder(dim=dim)))
    port, workers, dim = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = argparse.Namespace(host="127.0.0.1", port=port, log_level="warning", proxy_headers=False)
    child = [sys.executable, "-m", "tests.integration.serve_fake_workers", "child", str(dim)]
    return run_workers(load_settings(), args, workers, child_cmd=child)


if __name__ == "__main__":
    sys.exit(main())
