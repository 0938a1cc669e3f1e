"""Results page rendering: ``docs/RESULTS.md`` sections and plots from the JSON results files.

Jobs write JSON only; this package turns it into Markdown (:mod:`training.reports.page` owns the
section markers). ``recsvc-train report`` (:func:`render_page`) regenerates every section from one
results folder:

    recsvc-train report                                  # docs/results -> docs/RESULTS.md
    recsvc-train report --results var/results --page var/RESULTS.md
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from training.reports.page import SECTION_ORDER

GENERATIVE_JSON = "generative.json"
GENERATIVE_BEAM_JSON = "generative_beam.json"
HYBRID_JSON = "hybrid.json"


def render_page(results_dir: Path | str, page: Path | str, sections: Sequence[str] = SECTION_ORDER) -> Path:
    """Re-render ``sections`` of ``page`` (and their plots, beside the JSON) from the files in ``results_dir``."""
    unknown = sorted(set(sections) - set(SECTION_ORDER))
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(unknown)} (known: {', '.join(SECTION_ORDER)})")
    results_dir, page = Path(results_dir), Path(page)
    for name in sections:
        if name == "summary":
            from training.reports.summary import render as render_summary

            render_summary(results_dir, page)
        elif name == "seqrec":
            from training.reports.seqrec import render as render_seqrec

            render_seqrec(results_dir, page)
        elif name == "encoder":
            from training.reports.encoder import render as render_encoder

            render_encoder(results_dir, page)
        else:
            from training.reports.generative import write_generative_section

            write_generative_section(
                results_dir / GENERATIVE_JSON, results_dir / GENERATIVE_BEAM_JSON, page, results_dir / HYBRID_JSON
            )
    return page
