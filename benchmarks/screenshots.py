"""Drive the demo page (/ui) in headless Chromium and save its screenshots.

    python -m benchmarks.screenshots --out docs/img                        # serves artifacts/ itself
    python -m benchmarks.screenshots --out docs/img --url http://127.0.0.1:8000   # a running service

Uses Debian's ``chromium`` (``apt-get install chromium``) through Playwright's Python package,
never a downloaded browser. The flow (search -> click results into the history -> recommendations
per mode -> a category filter -> an item's payload -> embed a new item) is the one
``tests/integration/test_ui.py`` runs; screenshots are written only when ``out`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
TIMEOUT_MS = 60_000


def find_chromium() -> str | None:
    """The system Chromium binary, or None."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return next((c for c in CHROMIUM_CANDIDATES if Path(c).is_file()), None)


@contextlib.contextmanager
def launch(executable: str) -> Iterator[Any]:
    """A headless Chromium browser (Playwright) on the system binary."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class FlowResult:
    """What the flow saw: console errors, requests to other origins, ids, and the screenshots taken."""

    console_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    dense: list[str] = field(default_factory=list)
    filtered_category: str = ""
    filtered_facts: list[str] = field(default_factory=list)
    payload: dict[str, Any] = field(default_factory=dict)
    unavailable_modes: list[str] = field(default_factory=list)
    embed_text: str = ""
    screenshots: list[Path] = field(default_factory=list)


def run_flow(browser: Any, base: str, query: str, out: Path | None = None) -> FlowResult:
    """search ``query`` -> add the first two results to the history -> recommendations per mode ->
    filter by the first recommendation's category -> open a payload -> embed a new item."""
    res = FlowResult()
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.on("console", lambda m: res.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: res.console_errors.append(f"page error: {e}"))
    page.on("request", lambda r: None if r.url.startswith(base) else res.foreign_requests.append(r.url))

    def shot(name: str) -> None:
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            path = out / name
            page.screenshot(path=str(path), full_page=True)
            res.screenshots.append(path)

    page.goto(f"{base}/ui")
    page.wait_for_selector("body[data-ready=true]")

    page.fill("#query", query)
    page.click("#search-btn")
    page.wait_for_selector("#search-results li.item")
    shot("ui-search.png")

    for i in range(2):
        page.locator("#search-results li.item button.add").nth(i).click()
        page.wait_for_function("n => document.querySelectorAll('#history .chip').length === n", arg=i + 1)
    res.history = page.eval_on_selector_all("#history .chip", "els => els.map(e => e.dataset.itemId)")
    dense = '.mode[data-mode="dense"]'
    page.wait_for_selector('#modes[data-history-len="2"]')  # the round for the whole history
    page.wait_for_selector(f"{dense} li.item")
    res.dense = page.eval_on_selector_all(f"{dense} li.item", "els => els.map(e => e.dataset.itemId)")
    res.unavailable_modes = page.eval_on_selector_all(".mode.unavailable", "els => els.map(e => e.dataset.mode)")
    shot("ui-recommend.png")

    first = page.locator(f"{dense} li.item").first
    payload = json.loads(first.locator("pre.payload").text_content() or "{}")
    categories = [c for c in payload.get("categories", []) if c]
    res.filtered_category = categories[1] if len(categories) > 1 else (categories[0] if categories else "")
    if res.filtered_category:
        seq = int(page.get_attribute("#modes", "data-seq") or 0)
        page.fill("#f-category", res.filtered_category)
        page.click("#recommend-btn")
        page.wait_for_function("n => Number(document.querySelector('#modes').dataset.seq) > n", arg=seq)
        page.wait_for_function(
            "cat => { const f = [...document.querySelectorAll('.mode[data-mode=\"dense\"] li.item .facts')];"
            " return f.length > 0 && f.every(e => e.textContent.includes(cat)); }",
            arg=res.filtered_category,
        )
        res.filtered_facts = page.eval_on_selector_all(f"{dense} li.item .facts", "els => els.map(e => e.textContent)")

    item = page.locator(f"{dense} li.item").first
    item.locator("details summary").click()
    res.payload = json.loads(item.locator("pre.payload").text_content() or "{}")
    res.payload["_shown_for"] = item.get_attribute("data-item-id")
    shot("ui-payload.png")

    page.fill("#a-title", "Sandalwood beard balm with argan oil")
    page.fill("#a-brand", "Northwood")
    page.fill("#a-categories", "Beauty, Men")
    page.click("#embed-btn")
    page.wait_for_selector("#embed-result div")
    res.embed_text = page.text_content("#embed-result") or ""
    shot("ui-add-item.png")
    page.close()
    return res


@contextlib.contextmanager
def serve_artifacts(artifacts: Path) -> Iterator[str]:
    """The service on ``artifacts`` (its latest set, real encoder) under uvicorn on a free loopback
    port, with embedded Qdrant in a temporary folder; yields the base URL."""
    import socket
    import threading
    import time

    import uvicorn
    from pydantic import SecretStr

    from service.config import Settings
    from service.main import create_app

    with tempfile.TemporaryDirectory(prefix="recsvc-shots-") as tmp:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=Path(tmp),
            artifacts_dir=artifacts,
            admin_token=SecretStr(os.urandom(16).hex()),
            redis={"url": None},  # type: ignore[arg-type]
        )
        app = create_app(settings)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 300
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise SystemExit("the service did not start (see the log above)")
            time.sleep(0.1)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for the PNG files (e.g. docs/img)")
    ap.add_argument("--url", help="a running service (default: serve --artifacts here)")
    ap.add_argument(
        "--artifacts", type=Path, default=Path("artifacts"), help="artifact sets to serve (make demo-build)"
    )
    ap.add_argument("--query", default="tea tree shampoo", help="the search the flow starts with")
    args = ap.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("no chromium binary: apt-get install -y chromium")
    with contextlib.ExitStack() as stack:
        base = args.url.rstrip("/") if args.url else stack.enter_context(serve_artifacts(args.artifacts))
        browser = stack.enter_context(launch(chromium))
        res = run_flow(browser, base, args.query, args.out)
    for path in res.screenshots:
        print(path)
    if res.console_errors:
        print("console errors:", *res.console_errors, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
