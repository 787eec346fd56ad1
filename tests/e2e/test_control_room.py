"""The control-room monitor in real headless Chromium against ``naboom serve`` with PostgreSQL, Redis
and Mosquitto: what an operator sees when a device sends an SOS, when a colleague acts on it, and
when the backend dies and comes back; and an admin provisioning a device.

Each test opens its own incidents (a message of its own, so it finds them in the API). Waits are
Playwright's auto-waiting assertions and ``wait_for``; screenshots go to ``NABOOM_E2E_SCREENSHOTS``.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, expect
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from naboom.users.auth import CSRF_COOKIE
from tests.e2e.conftest import VIEWPORT, Screen, open_screen
from tests.support import Server, Stack, publish, publisher, sos, unique_pid, unique_region, wait_for

PASSWORD = "correct-horse-1"


@dataclass
class ControlRoom:
    """One region with a device, two operators and an admin of the running server."""

    server: Server
    region: str
    device: dict[str, Any]
    operators: tuple[str, str]
    admin: str
    sent: int = 0

    @property
    def stack(self) -> Stack:
        return self.server.stack

    def token(self, username: str) -> str:
        return self.stack.login(username, PASSWORD)

    async def send_sos(self, msg: str) -> None:
        """The device publishes a signed SOS to the broker (QoS 1, returns once the broker has it)."""
        # A few hundred metres apart, so the screenshots show each marker.
        self.sent += 1
        body = sos(self.device, msg=msg, lat=-24.53 + 0.004 * self.sent, lng=28.71 - 0.006 * self.sent)

        def send() -> None:
            with publisher(*self.stack.mqtt_address) as client:
                publish(client, f"panic/ingest/{self.device['pid']}", body)

        await asyncio.to_thread(send)

    async def incident_id(self, msg: str, timeout: float = 60) -> str:
        """The id of the incident the SOS with ``msg`` opened, once the backend has stored it."""
        token = self.token(self.operators[0])

        async def stored() -> str | None:
            async with httpx.AsyncClient(base_url=self.stack.base_url, timeout=10) as client:
                try:
                    r = await client.get(
                        "/api/incidents", params={"region": self.region, "limit": 100},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                except httpx.TransportError:
                    return None  # the server is (re)starting
            items = r.json()["items"] if r.status_code == 200 else []
            return next((str(i["id"]) for i in items if i.get("msg") == msg), None)

        return await wait_for(stored, timeout=timeout, what=f"the incident of {msg!r} in the API")


@pytest.fixture(scope="module")
def room(server: Server) -> ControlRoom:
    stack = server.stack
    region = unique_region()
    device = stack.create_device(unique_pid("e2e"), region)
    operators = (f"op-{uuid.uuid4().hex[:6]}", f"op-{uuid.uuid4().hex[:6]}")
    for name in operators:
        stack.create_user(name, "operator", region, password=PASSWORD)
    admin = f"admin-{uuid.uuid4().hex[:6]}"
    stack.create_user(admin, "admin", password=PASSWORD)
    return ControlRoom(server, region, device, operators, admin)


@pytest.fixture(scope="module")
async def first(browser: Browser, room: ControlRoom) -> AsyncIterator[Screen]:
    """The first operator's monitor, signed in and live for the whole module."""
    screen = await open_screen(browser, room.stack.base_url, room.operators[0], PASSWORD)
    await expect(screen.page.get_by_test_id("connection-state")).to_have_attribute("data-state", "live")
    yield screen
    await screen.context.close()


@pytest.fixture(scope="module")
async def second(browser: Browser, room: ControlRoom) -> AsyncIterator[Screen]:
    """Another operator of the same region, at another desk."""
    screen = await open_screen(browser, room.stack.base_url, room.operators[1], PASSWORD)
    yield screen
    await screen.context.close()


def incident_item(page: Page, incident_id: str) -> Locator:
    return page.locator(f'[data-testid="incident-item"][data-incident-id="{incident_id}"]')


def incident_marker(page: Page, incident_id: str) -> Locator:
    return page.locator(f'.incident-marker[data-incident-id="{incident_id}"]')


# True once the map's panes and markers have kept their place for 15 animation frames in a row: a
# fly-to has ended and Leaflet has redrawn its vector layers (mid-flight they are scaled bitmaps).
MAP_AT_REST = """() => {
    const pane = document.querySelector('.leaflet-map-pane');
    if (!pane) return true;
    const markers = [...document.querySelectorAll('.incident-marker')]
        .map((m) => { const r = m.getBoundingClientRect(); return `${Math.round(r.x)},${Math.round(r.y)}`; });
    const key = [getComputedStyle(pane).transform, document.querySelectorAll('.leaflet-zoom-anim').length, ...markers].join('|');
    window.__e2eMapCount = window.__e2eMapKey === key ? (window.__e2eMapCount || 0) + 1 : 0;
    window.__e2eMapKey = key;
    return window.__e2eMapCount >= 15;
}"""


async def shoot(page: Page, screenshots: Path, name: str) -> None:
    """A screenshot of what the user sees, once the map is at rest."""
    try:
        await page.wait_for_function(MAP_AT_REST, polling="raf", timeout=15_000)
    except PlaywrightTimeoutError:
        pass  # a map that never rests still gets its picture; the pictures are for people, not asserts
    await page.screenshot(path=screenshots / f"{name}.png", full_page=False)


async def test_a_signed_sos_over_mqtt_raises_a_marker_a_list_entry_and_a_toast(
    room: ControlRoom, first: Screen, screenshots: Path
) -> None:
    page = first.page
    # An operator has no way into the admin screens.
    await expect(page.get_by_test_id("nav-admin")).to_have_count(0)
    msg = f"E2E SOS {uuid.uuid4().hex[:6]}"

    await room.send_sos(msg)
    incident_id = await room.incident_id(msg)

    await expect(incident_marker(page, incident_id)).to_be_visible()
    await expect(incident_marker(page, incident_id)).to_have_attribute("data-status", "open")
    await expect(incident_item(page, incident_id)).to_have_attribute("data-status", "open")
    toast = page.locator(f'[data-testid="toast"][data-incident-id="{incident_id}"]')
    await expect(toast).to_be_visible()
    # The alarm is on until someone acknowledges: it can be muted, and the tab title flashes.
    await expect(page.get_by_test_id("alarm-mute")).to_be_visible()
    await expect(page).to_have_title(re.compile("SOS"))
    await shoot(page, screenshots, "01-monitor-new-sos")
    first.assert_no_script_errors()


async def test_an_acknowledgement_at_another_desk_shows_on_the_first_at_once(
    room: ControlRoom, first: Screen, second: Screen, screenshots: Path
) -> None:
    msg = f"E2E ack {uuid.uuid4().hex[:6]}"
    await room.send_sos(msg)
    incident_id = await room.incident_id(msg)
    await expect(incident_item(first.page, incident_id)).to_have_attribute("data-status", "open")

    page = second.page
    await incident_item(page, incident_id).click()
    detail = page.get_by_test_id("incident-detail")
    await expect(detail).to_have_attribute("data-incident-id", incident_id)
    await expect(page).to_have_url(re.compile(f"/monitor/incidents/{incident_id}$"))
    await page.get_by_test_id("action-acknowledge").click()
    await expect(page.get_by_test_id("incident-status")).to_contain_text(re.compile("acknowledged", re.I))
    await expect(page.get_by_test_id("timeline-entry").first).to_be_visible()

    # The first operator did nothing: the change arrives by the live feed.
    await expect(incident_item(first.page, incident_id)).to_have_attribute("data-status", "acknowledged")
    await expect(incident_marker(first.page, incident_id)).to_have_attribute("data-status", "acknowledged")
    await shoot(page, screenshots, "02-incident-detail-acknowledged")
    await shoot(first.page, screenshots, "03-monitor-after-colleague-acknowledged")
    first.assert_no_script_errors()
    second.assert_no_script_errors()


async def test_an_sos_sent_while_the_backend_was_down_appears_after_it_returns(
    room: ControlRoom, first: Screen, screenshots: Path
) -> None:
    page = first.page
    state = page.get_by_test_id("connection-state")
    await expect(state).to_have_attribute("data-state", "live")

    await asyncio.to_thread(room.server.kill)
    await expect(state).to_have_attribute("data-state", re.compile("reconnecting|offline"))
    await expect(state).not_to_have_text(re.compile("^\\s*live\\s*$", re.I))
    await expect(page.get_by_test_id("feed-down-banner")).to_be_visible(timeout=30_000)
    await shoot(page, screenshots, "04-monitor-backend-down")

    # The broker keeps it for the ingest's persistent session until the backend is back.
    msg = f"E2E missed {uuid.uuid4().hex[:6]}"
    await room.send_sos(msg)
    await asyncio.to_thread(room.server.start)
    incident_id = await room.incident_id(msg)

    # Reconnect backoff may still be waiting out its last delay when the server is back.
    await expect(state).to_have_attribute("data-state", "live", timeout=60_000)
    await expect(page.get_by_test_id("feed-down-banner")).to_be_hidden()
    await expect(incident_item(page, incident_id)).to_be_visible()
    await expect(incident_marker(page, incident_id)).to_be_visible()
    await shoot(page, screenshots, "05-monitor-after-reconnect")
    first.assert_no_script_errors()


async def test_an_admin_registers_a_device_and_sees_its_secret_and_qr_once(
    browser: Browser, room: ControlRoom, screenshots: Path
) -> None:
    screen = await open_screen(browser, room.stack.base_url, room.admin, PASSWORD)
    page = screen.page
    try:
        await page.get_by_test_id("nav-admin").click()
        await expect(page).to_have_url(re.compile("/monitor/admin"))
        await page.get_by_test_id("admin-nav-devices").click()
        pid = unique_pid("e2e-admin")
        await page.get_by_test_id("device-create-pid").fill(pid)
        await page.get_by_test_id("device-create-region").select_option(room.region)
        await page.get_by_test_id("device-create-submit").click()

        secret = page.get_by_test_id("device-secret")
        await expect(secret).to_have_text(re.compile(r"\S{16,}"))
        qr = page.get_by_test_id("device-qr")
        await expect(qr).to_be_visible()
        assert await qr.evaluate("el => el.tagName === 'CANVAS' ? el.width > 0 : el.naturalWidth > 0")
        shown = (await secret.inner_text()).strip()
        await shoot(page, screenshots, "06-admin-device-secret")

        # The secret on the screen is the device's real key: an SOS signed with it is accepted.
        r = room.stack.submit(sos({"pid": pid, "kid": 1, "secret": shown}, msg="E2E provisioned"))
        assert r.status_code == 201, r.text

        await page.get_by_test_id("secret-done").click()
        await expect(secret).to_have_count(0)
        await expect(page.locator('[data-testid="device-row"]', has_text=pid)).to_be_visible()
        await shoot(page, screenshots, "07-admin-devices")
        screen.assert_no_script_errors()
    finally:
        await screen.context.close()


async def test_a_wrong_password_is_refused_on_the_login_form(browser: Browser, room: ControlRoom) -> None:
    context = await browser.new_context(base_url=room.stack.base_url, viewport=VIEWPORT)
    try:
        page = await context.new_page()
        await page.goto("/monitor/")
        await page.get_by_test_id("login-username").fill(room.operators[1])
        await page.get_by_test_id("login-password").fill("not-the-password")
        await page.get_by_test_id("login-submit").click()
        await expect(page.get_by_test_id("login-error")).to_be_visible()
        await expect(page.get_by_test_id("current-user")).to_have_count(0)
    finally:
        await context.close()


async def test_when_the_session_ends_the_login_returns_the_operator_to_the_same_incident(
    browser: Browser, room: ControlRoom
) -> None:
    msg = f"E2E expiry {uuid.uuid4().hex[:6]}"
    await room.send_sos(msg)
    incident_id = await room.incident_id(msg)
    screen = await open_screen(browser, room.stack.base_url, room.operators[1], PASSWORD)
    page = screen.page
    try:
        await page.goto(f"/monitor/incidents/{incident_id}")
        await expect(page.get_by_test_id("incident-detail")).to_have_attribute("data-incident-id", incident_id)

        # The session ends on the server, as when it expires: the next request answers 401.
        csrf = next(c["value"] for c in await screen.context.cookies() if c["name"] == CSRF_COOKIE)
        r = await screen.context.request.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
        assert r.ok, await r.text()
        # The operator's next action meets the 401, unless the monitor noticed first (its live
        # stream is refused too, and a refused stream checks the session): either way the login
        # comes back, and a click waiting on a button the login replaced is given up.
        click = asyncio.ensure_future(page.get_by_test_id("action-acknowledge").click())
        try:
            await expect(page.get_by_test_id("login-username")).to_be_visible()
        finally:
            click.cancel()
            await asyncio.gather(click, return_exceptions=True)
        await page.get_by_test_id("login-username").fill(room.operators[1])
        await page.get_by_test_id("login-password").fill(PASSWORD)
        await page.get_by_test_id("login-submit").click()
        await expect(page).to_have_url(re.compile(f"/monitor/incidents/{incident_id}$"))
        await expect(page.get_by_test_id("incident-detail")).to_have_attribute("data-incident-id", incident_id)
        screen.assert_no_script_errors()
    finally:
        await screen.context.close()
