"""Assemble ``docs/RESULTS.md`` from sections that each results command owns.

Every quality command (seqrec harness, encoder evaluation, generative evaluation)
renders its own markdown and calls :func:`write_section`, which replaces only the
text between that section's markers. A command therefore regenerates its tables
without touching the others, and the page never holds a number that no command
wrote.
"""

from __future__ import annotations

import re
from pathlib import Path

DEFAULT_PATH = Path("docs/RESULTS.md")  # the repository's own results page
RESULTS_DIR = Path("docs/results")  # ... and the JSON it is rendered from
SECTION_ORDER = ("summary", "seqrec", "generative", "encoder")
HEADER = """# Results

Every table on this page is written by a command in this repository; the command
is named under each heading. Data comes from `../shared/data` (see
`../shared/data/README.md` for the layout and published reference points); the
protocol is leave-one-out with full ranking over all items unless a section
says otherwise. Do not edit between the `BEGIN`/`END` markers by hand.
"""


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"


def write_section(name: str, markdown: str, path: Path | str = DEFAULT_PATH) -> Path:
    """Replace (or add) section ``name`` of the results page with ``markdown``."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise ValueError(f"section name must be lower-case letters, digits, '-' or '_': {name!r}")
    p = Path(path)
    text = p.read_text(encoding="utf-8") if p.exists() else HEADER
    begin, end = _markers(name)
    block = f"{begin}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    found = pattern.search(text) is not None
    text = pattern.sub(lambda _m: block, text) if found else _insert_in_order(text, name, block)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text.rstrip() + "\n", encoding="utf-8")
    return p


def _insert_in_order(text: str, name: str, block: str) -> str:
    """Insert a new section before the first known section that should follow it."""
    order = list(SECTION_ORDER)
    rank = order.index(name) if name in order else len(order)
    for later in order[rank + 1 :]:
        begin, _ = _markers(later)
        at = text.find(begin)
        if at >= 0:
            return text[:at] + block + "\n\n" + text[at:]
    return text.rstrip() + "\n\n" + block + "\n"


def read_section(name: str, path: Path | str = DEFAULT_PATH) -> str | None:
    """The current markdown of section ``name`` (None when absent)."""
    p = Path(path)
    if not p.exists():
        return None
    begin, end = _markers(name)
    m = re.search(re.escape(begin) + r"\n(.*?)\n" + re.escape(end), p.read_text(encoding="utf-8"), re.DOTALL)
    return m.group(1) if m else None
