"""``python -m training.cli`` = ``recsvc-train``."""

import sys

from training.cli import main

sys.exit(main())
