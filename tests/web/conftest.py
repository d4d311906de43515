"""A real headless browser for the web page tests: Debian's chromium driven by Playwright.

CI needs `apt-get install -y chromium` and `pip install playwright` (the PyPI wheel ships the driver);
`playwright install` is never run: we launch the system browser by path.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    path = os.environ.get("SRSERVE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("chromium not found: `apt-get install -y chromium` (or set SRSERVE_CHROMIUM)", pytrace=False)
    return path


# module scope: Playwright's sync API keeps an event loop running in this thread while the browser is
# open, which would break asyncio.run() in tests collected after these
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: `pip install playwright` (no browser download)", pytrace=False)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    # an HTTP error answer is logged by Chromium too ("Failed to load resource"): tests that provoke one
    # check the page's own display of it instead; anything else on the console is a bug
    pg.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    # the page must work with no network beyond the service: fail any other request
    pg.route(
        "**/*",
        lambda route: route.continue_() if route.request.url.startswith("http://127.0.0.1") or
        route.request.url.startswith(("blob:", "data:")) else route.abort(),
    )  # fmt: skip
    yield pg
    context.close()
    assert not errors, f"browser console errors: {errors}"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
