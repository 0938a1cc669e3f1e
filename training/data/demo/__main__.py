"""``python -m training.data.demo``: see :mod:`training.data.demo.cli`."""

from training.data.demo.cli import main

raise SystemExit(main())
