"""Fixtures of the end-to-end tests: a fresh monitor build, Debian's Chromium driven by Playwright,
``naboom serve`` on the real stack serving that build, and where screenshots go.

Chromium is the machine's (``/usr/bin/chromium``, from Debian's ``chromium`` package, which the
test command installs); Playwright only drives it, it downloads no browser.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright, expect

from tests.support import ROOT, Server, Stack

CHROMIUM = os.environ.get("NABOOM_E2E_CHROMIUM", "/usr/bin/chromium")
# Headless on a machine with no display, no GPU and a closed network: without the background
# networking flags Chromium keeps trying to reach its vendor's services.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(os.environ.get("NABOOM_E2E_SCREENSHOTS") or Path(tempfile.gettempdir()) / "naboom-e2e-screenshots")
VIEWPORT: ViewportSize = {"width": 1440, "height": 900}

# The monitor's waits are for the live feed, an SSE reconnect with backoff and a restarting server.
expect.set_options(timeout=20_000)


@pytest.fixture(scope="session")
def monitor_dist() -> Path:
    """``frontend/dist``, built first when missing or older than its sources (as ``scripts/dev`` does)."""
    run = subprocess.run(
        ["bash", "-c", '. scripts/lib.sh && ensure_monitor'],
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, (
        "building the monitor failed (the e2e tests need Node.js >= 20 and npm; scripts/test installs them):\n"
        + run.stdout[-4000:]
        + run.stderr[-4000:]
    )
    dist = ROOT / "frontend" / "dist"
    assert (dist / "index.html").is_file(), f"no {dist}/index.html after the build"
    return dist


@pytest.fixture(scope="module")
def server(real_stack: Stack, monitor_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``naboom serve`` on the real stack, serving the fresh build at ``/monitor/``."""
    stack = dataclasses.replace(real_stack, extra={**real_stack.extra, "NABOOM_MONITOR_DIR": str(monitor_dist)})
    srv = Server(stack, tmp_path_factory.mktemp("e2e-logs") / "serve.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where the run leaves its screenshots (outside the repository; never committed)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium binary."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does)"
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    """One headless Chromium for the session; each user gets a context of their own."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        yield browser
        await browser.close()


@dataclass
class Screen:
    """One signed-in user's browser window (own context: own cookies, own live feed)."""

    context: BrowserContext
    page: Page
    username: str
    errors: list[str] = field(default_factory=list)

    def assert_no_script_errors(self) -> None:
        """No uncaught exception happened in the page."""
        assert not self.errors, f"uncaught errors in {self.username}'s page: {self.errors}"


async def open_screen(browser: Browser, base_url: str, username: str, password: str) -> Screen:
    """A new browser context that opens the monitor and signs in through its login form."""
    context = await browser.new_context(base_url=base_url, viewport=VIEWPORT)
    page = await context.new_page()
    screen = Screen(context, page, username)
    page.on("pageerror", lambda exc: screen.errors.append(str(exc)))
    await page.goto("/monitor/")
    await page.get_by_test_id("login-username").fill(username)
    await page.get_by_test_id("login-password").fill(password)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("current-user")).to_contain_text(username)
    return screen
