"""`recsvc-train report`: re-render the results page from the JSON results files.

    recsvc-train report                                            # docs/results -> docs/RESULTS.md
    recsvc-train report --results var/results --page var/RESULTS.md --sections seqrec

Every section of the page (:data:`training.reports.page.SECTION_ORDER`) is rendered by
:mod:`training.reports` from the JSON the results commands wrote; nothing is trained or evaluated.
"""

from __future__ import annotations

import argparse
from typing import Any

from training.reports import render_page
from training.reports.page import DEFAULT_PATH, RESULTS_DIR, SECTION_ORDER


def add_parser(sub: Any) -> None:
    r = sub.add_parser("report", help="re-render the results page (sections + plots) from the JSON results")
    r.add_argument("--results", default=str(RESULTS_DIR), help=f"folder of the JSON results (default {RESULTS_DIR})")
    r.add_argument("--page", default=str(DEFAULT_PATH), help=f"results page to write (default {DEFAULT_PATH})")
    r.add_argument(
        "--sections",
        default=",".join(SECTION_ORDER),
        help=f"comma list of sections (default {','.join(SECTION_ORDER)})",
    )
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    try:
        print(render_page(args.results, args.page, sections))
    except ValueError as exc:
        raise SystemExit(f"report: {exc}") from None
    return 0
