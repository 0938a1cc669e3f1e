"""The demo page (/ui): served from static files with a strict CSP, and driven in headless Chromium
(Debian's chromium through Playwright's Python package): it loads without console errors, loads
nothing from other origins, and search -> click -> recommend shows results that honour the filters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from benchmarks.screenshots import find_chromium, launch, run_flow
from tests.conftest import ADMIN_TOKEN, TEXT_DIM
from tests.live import live_service  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

CHROMIUM = find_chromium()


def test_page_and_assets_are_served_with_a_strict_csp(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    redirect = client.get("/ui", follow_redirects=False)
    assert redirect.status_code == 307 and redirect.headers["location"].endswith("/ui/")
    page = client.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
    for ref in ("app.js", "app.css", "favicon.svg"):
        assert f'"{ref}"' in page.text
        asset = client.get(f"/ui/{ref}")
        assert asset.status_code == 200 and asset.content, ref
    assert client.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
    # no third-party URLs anywhere in the page's files
    for ref in ("", "app.js", "app.css"):
        text = client.get(f"/ui/{ref}").text
        assert "http://" not in text and "https://" not in text.replace("http://www.w3.org", ""), ref
    for bad in ("index2.html", "..%2Fui.py", "config.py"):
        assert client.get(f"/ui/{bad}").status_code == 404
    config = client.get("/ui/config.json").json()
    assert config["modes"] == ["dense"] and config["items"] == 48 and config["admin"] is True


@pytest.fixture
def chromium() -> str:
    if CHROMIUM is None:
        pytest.skip("no chromium binary installed (apt-get install -y chromium); CI installs it")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed (dev extra)")
    return CHROMIUM


@pytest.fixture
def browser(chromium: str) -> Iterator[Any]:
    with launch(chromium) as b:
        yield b


def test_search_click_recommend_in_chromium(browser: Any, live_service: Callable[..., str]) -> None:  # noqa: F811
    base = live_service()
    res = run_flow(browser, base, query="Hair product gentle")
    assert res.console_errors == []
    assert res.foreign_requests == []
    assert len(res.history) == 2 and all(res.history)
    assert 0 < len(res.dense) <= 8 and not set(res.history) & set(res.dense)
    assert res.unavailable_modes == ["generative", "hybrid"]  # the tiny set has no generative model
    assert res.filtered_category and res.filtered_facts
    assert all(res.filtered_category in f for f in res.filtered_facts)
    assert res.payload["item_id"] == res.payload["_shown_for"] and res.payload["title"]
    assert f"dim {TEXT_DIM}" in res.embed_text and "Sandalwood beard balm" in res.embed_text
    assert res.screenshots == []  # the default run writes no files


def test_new_item_history_and_reindex_token_not_stored(browser: Any, live_service: Callable[..., str]) -> None:  # noqa: F811
    base = live_service()
    errors: list[str] = []
    page = browser.new_page()
    page.set_default_timeout(60_000)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{base}/ui/")
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#a-title", "Rose water facial toner")
    page.click("#use-new-btn")
    page.wait_for_selector("#history .chip.new")
    page.wait_for_selector('.mode[data-mode="dense"] li.item')  # recommended from an item given by text
    page.fill("#admin-token", ADMIN_TOKEN)
    page.click("#reindex-btn")
    page.locator("#admin-result", has_text="succeeded").wait_for()
    stored = page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie")
    assert ADMIN_TOKEN not in stored and ADMIN_TOKEN not in page.url
    # a wrong token shows the service's error in the status line
    page.fill("#admin-token", "wrong-token-0123456789")
    page.click("#reindex-btn")
    page.locator("#status", has_text="unauthorized").wait_for()
    page.close()
    # the only console error is the browser's own line about the refused (401) request
    assert all("401" in e for e in errors), errors
    assert httpx.get(f"{base}/readyz").status_code == 200


def test_screenshots_command_writes_pngs_where_asked(
    chromium: str,
    live_service: Callable[..., str],  # noqa: F811
    tmp_path: Any,
) -> None:
    from benchmarks.screenshots import main

    base = live_service()
    out = tmp_path / "img"
    assert main(["--out", str(out), "--url", base, "--query", "Skin product fresh"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["ui-add-item.png", "ui-payload.png", "ui-recommend.png", "ui-search.png"]
    for p in out.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000, p
