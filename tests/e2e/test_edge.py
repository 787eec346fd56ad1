"""The production path end to end: real nginx with the rendered production site and a test CA's
certificate in front of ``naboom serve`` (PostgreSQL, Redis) and Mosquitto with the production
config and its WebSockets listener.

Everything here goes through nginx's HTTPS port the way a browser, a patrol vehicle or a field
device reaches the deployment; the app's own port is used only to set the scene (users, vehicles).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from playwright.async_api import Browser, Page, expect

from tests.brokers import ProductionBroker, production_broker
from tests.edge import EdgeCertificates, NginxEdge
from tests.support import (
    REDIS_URL,
    Server,
    Stack,
    create_database,
    drop_database,
    sos,
    unique_pid,
    unique_region,
    wait_for,
)

PASSWORD = "correct-horse-1"
SECURITY_HEADERS = {
    "strict-transport-security": "max-age=31536000",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "strict-origin-when-cross-origin",
    "permissions-policy": "camera=()",
    "content-security-policy": "frame-ancestors 'none'",
}
# The edge's rate limit for the test: one ping a second per address, bursts of three.
PING_RATE, PING_BURST = "1r/s", 3
NABOOM_SIM = str(Path(sys.executable).parent / "naboom-sim")


@dataclass
class Edge:
    """The running deployment: the app's stack, its server, nginx in front and the broker."""

    stack: Stack
    server: Server
    nginx: NginxEdge
    broker: ProductionBroker
    tmp: Path

    @property
    def url(self) -> str:
        return self.nginx.https_url

    @property
    def certificates(self) -> EdgeCertificates:
        return self.nginx.certificates

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An HTTPS client of the edge that trusts only the test CA."""
        options: dict[str, Any] = {"timeout": 20, **kwargs}
        return httpx.AsyncClient(base_url=self.url, verify=self.certificates.ssl_context(), **options)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, monitor_dist: Path) -> Iterator[Edge]:
    tmp = tmp_path_factory.mktemp("edge")
    with production_broker(tmp / "broker") as broker:
        database = create_database()
        stack = Stack(var_dir=tmp / "var", database_url=database, redis_url=REDIS_URL, mqtt_url=broker.app_url)
        nginx = NginxEdge(
            tmp / "nginx",
            app_port=stack.http_port,
            mqtt_ws_port=broker.ws_port,
            monitor_root=monitor_dist,
            ping_rate=PING_RATE,
            ping_burst=PING_BURST,
        )
        stack.extra.update(
            {
                # nginx on loopback is the one proxy whose X-Forwarded-For the app believes.
                "NABOOM_TRUSTED_PROXIES": "127.0.0.1",
                "NABOOM_ALLOWED_ORIGINS": nginx.https_url,
                "NABOOM_ALLOWED_HOSTS": "127.0.0.1,localhost",
                "NABOOM_PUBLIC_URL": nginx.https_url,
                "NABOOM_MQTT_ADMIN_URL": broker.admin_url,
                "NABOOM_MONITOR_DIR": str(monitor_dist),
                # The app's own per-vehicle bucket stays out of the way: any 429 here is nginx's.
                "NABOOM_VEHICLE_PINGS_PER_MINUTE": "100000",
                "NABOOM_VEHICLE_PING_BURST": "100000",
            }
        )
        stack.cli("migrate")
        server = Server(stack, tmp / "serve.log")
        server.start()
        try:
            with nginx:
                yield Edge(stack, server, nginx, broker, tmp)
        finally:
            server.stop()
            drop_database(database)


def assert_security_headers(response: httpx.Response) -> None:
    for name, part in SECURITY_HEADERS.items():
        assert part in response.headers.get(name, ""), f"{name} missing or wrong on {response.url}: {response.headers}"
    for name in (*SECURITY_HEADERS, "x-request-id"):
        assert len(response.headers.get_list(name)) == 1, f"{name} sent twice on {response.url}"


def test_rendered_production_config_passes_nginx_t(edge: Edge, tmp_path: Path) -> None:
    checked = edge.nginx.check()
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr
    # The same for a render with the VPS's defaults changed only where this machine needs it.
    other = edge.nginx.with_settings(tmp_path, csp_tile_sources=("https://tiles.example.org",))
    checked = other.check()
    assert checked.returncode == 0, checked.stderr


async def test_plain_http_redirects_permanently_to_https_keeping_the_path(edge: Edge) -> None:
    async with httpx.AsyncClient(base_url=edge.nginx.http_url) as client:
        r = await client.get("/monitor/incidents?x=1")
    assert r.status_code == 301
    assert r.headers["location"] == f"{edge.url}/monitor/incidents?x=1"


async def test_acme_challenges_are_served_over_plain_http(edge: Edge) -> None:
    challenge = Path(edge.nginx.settings.acme_root) / ".well-known" / "acme-challenge"
    challenge.mkdir(parents=True, exist_ok=True)
    (challenge / "token-123").write_text("proof")
    async with httpx.AsyncClient(base_url=edge.nginx.http_url) as client:
        r = await client.get("/.well-known/acme-challenge/token-123")
    assert r.status_code == 200 and r.text == "proof"


async def test_security_headers_on_monitor_api_static_and_error_responses(edge: Edge) -> None:
    token = edge.stack.admin()
    async with edge.client() as client:
        index = await client.get("/monitor/")
        api = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        health = await client.get("/monitoring/health/")
        missing = await client.get("/no-such-page")
        missing_asset = await client.get("/monitor/assets/no-such-chunk.js")
        refused = await client.get("/api/incidents")  # no token: the app's 401
        asset_path = next(p.name for p in (Path(edge.nginx.settings.monitor_root) / "assets").glob("index-*.js"))
        asset = await client.get(f"/monitor/assets/{asset_path}")
    assert (index.status_code, api.status_code, health.status_code, asset.status_code) == (200, 200, 200, 200)
    assert (missing.status_code, missing_asset.status_code, refused.status_code) == (404, 404, 401)
    for response in (index, api, health, missing, missing_asset, refused, asset):
        assert_security_headers(response)
        assert response.headers["x-request-id"]
    assert "nginx/" not in (missing.headers.get("server", "") + missing.text)  # server_tokens off
    csp = index.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self' 'unsafe-inline'" in csp and "object-src 'none'" in csp


async def test_monitor_assets_are_immutable_and_index_and_spa_routes_are_no_store(edge: Edge) -> None:
    dist = Path(edge.nginx.settings.monitor_root)
    index_html = (dist / "index.html").read_text()
    asset = next((dist / "assets").glob("*.css")).name
    async with edge.client() as client:
        static = await client.get(f"/monitor/assets/{asset}", headers={"Accept-Encoding": "gzip"})
        index = await client.get("/monitor/")
        deep = await client.get("/monitor/incidents/3f2a9c1b")
        bare = await client.get("/monitor")
        root = await client.get("/")
    assert static.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert static.headers.get("content-encoding") == "gzip"
    for page in (index, deep):
        assert page.status_code == 200 and page.text == index_html
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["content-type"].startswith("text/html")
    assert (bare.status_code, bare.headers["location"].endswith("/monitor/")) == (301, True)
    assert (root.status_code, root.headers["location"].endswith("/monitor/")) == (302, True)


async def test_the_app_logs_the_client_address_and_request_id_that_nginx_sets(edge: Edge) -> None:
    """uvicorn takes the client from nginx's X-Forwarded-For (port 0 marks it); a client's own
    X-Forwarded-For is replaced, not believed; nginx's request id is the app's too."""
    token = edge.stack.admin()
    async with edge.client() as client:
        r = await client.get(
            "/api/auth/me", headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": "203.0.113.9"}
        )
    assert r.status_code == 200
    request_id = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)

    def logged() -> str | None:
        return next((line for line in edge.server.log().splitlines() if request_id in line), None)

    line = await wait_for(logged, what="the app's access log line of the request")
    assert "127.0.0.1:0 - " in line and "203.0.113.9" not in line, line


async def _submit(client: httpx.AsyncClient, device: dict[str, Any], msg: str) -> str:
    r = await client.post("/panic/api/submit", json=sos(device, msg=msg))
    assert r.status_code == 201, r.text
    return str(r.json()["incident_id"])


async def test_sse_through_nginx_delivers_an_sos_while_the_stream_stays_open(edge: Edge) -> None:
    region, device, token = edge.stack.new_region()
    msg = f"sse-{uuid.uuid4().hex[:6]}"
    frames: list[dict[str, str]] = []
    connected = asyncio.Event()

    async with edge.client(timeout=None) as client, client.stream(
        "GET", "/panic/api/stream", params={"region": region, "token": token}
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert "content-length" not in stream.headers
        assert stream.headers.get("content-encoding") is None  # never gzipped
        assert_security_headers(stream)

        async def read() -> None:
            frame: dict[str, str] = {}
            async for line in stream.aiter_lines():
                if line.startswith(": connected"):
                    connected.set()
                elif line == "" and frame:
                    frames.append(frame)
                    frame = {}
                elif not line.startswith(":") and line:
                    key, _, value = line.partition(":")
                    frame[key] = value.lstrip()

        reader = asyncio.create_task(read())
        try:
            await asyncio.wait_for(connected.wait(), 20)
            async with edge.client() as sender:
                incident_id = await _submit(sender, device, msg)
            event = await wait_for(
                lambda: next((f for f in frames if f.get("event") == "incident.created" and msg in f["data"]), None),
                what="the SOS on the open stream through nginx",
            )
            assert not reader.done(), "the stream ended: the event must arrive while it is open"
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    assert json.loads(event["data"])["id"] == incident_id


async def test_websocket_through_nginx_upgrades_and_receives_the_sos(edge: Edge) -> None:
    region, device, token = edge.stack.new_region()
    msg = f"ws-{uuid.uuid4().hex[:6]}"
    url = edge.url.replace("https://", "wss://") + f"/ws/alerts/{region}/?token={token}"
    async with websockets.connect(
        url, ssl=edge.certificates.ssl_context(), additional_headers={"Origin": edge.url}, open_timeout=20
    ) as ws:
        assert ws.response is not None and ws.response.status_code == 101
        assert ws.response.headers["upgrade"].lower() == "websocket"
        async with edge.client() as sender:
            incident_id = await _submit(sender, device, msg)

        async def created() -> dict[str, Any]:
            while True:
                event = json.loads(await ws.recv())
                if event.get("type") == "incident.created" and event.get("msg") == msg:
                    return event  # type: ignore[no-any-return]

        event = await asyncio.wait_for(created(), 20)
    assert event["id"] == incident_id and event["region"] == region


async def test_a_burst_of_vehicle_pings_is_cut_by_nginx_with_429_after_the_first_pass(edge: Edge) -> None:
    admin = edge.stack.admin()
    region = unique_region()
    edge.stack.create_device(unique_pid("veh"), region)  # makes the region
    async with httpx.AsyncClient(base_url=edge.stack.base_url, timeout=20) as app:
        auth = {"Authorization": f"Bearer {admin}"}
        r = await app.post("/api/vehicles", json={"callsign": f"EDGE-{uuid.uuid4().hex[:6]}", "region": region}, headers=auth)
        assert r.status_code == 201, r.text
        vehicle = r.json()

    headers = {"Authorization": f"Bearer {vehicle['token']}"}
    body = {"lat": -24.53, "lng": 28.71, "ts": datetime.now(UTC).isoformat()}
    async with edge.client() as client:
        statuses = []
        refused: httpx.Response | None = None
        for _ in range(12):
            r = await client.post("/panic/api/vehicle/ping", json=body, headers=headers)
            statuses.append(r.status_code)
            if r.status_code == 429 and refused is None:
                refused = r
    # The first request and the burst pass to the app; past them nginx answers itself.
    assert statuses[: PING_BURST + 1] == [202] * (PING_BURST + 1), statuses
    assert refused is not None, statuses
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "edge proxy" in refused.json()["detail"]
    assert refused.headers["retry-after"] == "1"
    assert_security_headers(refused)
    assert "limiting requests" in (edge.nginx.error_log.read_text())


def test_metrics_answer_inside_the_admin_allowlist_and_403_outside_it(edge: Edge, tmp_path: Path) -> None:
    admin = edge.stack.admin()
    auth = {"Authorization": f"Bearer {admin}"}
    verify = edge.certificates.ssl_context()
    with httpx.Client(base_url=edge.url, verify=verify) as client:
        metrics = client.get("/metrics")
        users = client.get("/api/users", headers=auth)
    assert metrics.status_code == 200 and "naboom" in metrics.text
    assert users.status_code == 200

    with (
        edge.nginx.with_settings(tmp_path, admin_allow=("10.0.0.0/8", "192.168.0.0/16")) as elsewhere,
        httpx.Client(base_url=elsewhere.https_url, verify=verify) as client,
    ):
        denied = client.get("/metrics")
        users = client.get("/api/users", headers=auth)
        schema = client.get("/schema/openapi.json")
        # Operators' paths are not behind the allowlist.
        mine = client.get("/api/auth/me", headers=auth)
    assert (denied.status_code, users.status_code, schema.status_code) == (403, 403, 403)
    assert mine.status_code == 200
    assert_security_headers(denied)


def test_sos_from_the_simulator_over_wss_through_nginx_becomes_an_incident(edge: Edge) -> None:
    region = unique_region()
    credentials = json.loads(edge.stack.cli("device", "create", unique_pid("sim"), "--region", region, "--broker"))
    assert credentials["mqtt_username"] and credentials["mqtt_password"]
    path = edge.tmp / f"{credentials['pid']}.json"
    path.write_text(json.dumps(credentials))
    run = subprocess.run(
        [
            NABOOM_SIM, "sos", "--credentials", str(path),
            "--broker", f"wss://127.0.0.1:{edge.nginx.https_port}/mqtt",
            "--ca", str(edge.certificates.ca), "--outbox", str(edge.tmp / "outbox"),
            "--give-up-after", "60", "--json",
        ],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    incident_id = json.loads(run.stdout.strip().splitlines()[-1])["incident_id"]
    operator = edge.stack.operator(region)
    with httpx.Client(base_url=edge.url, verify=edge.certificates.ssl_context()) as client:
        r = client.get(f"/api/incidents/{incident_id}", headers={"Authorization": f"Bearer {operator}"})
    assert r.status_code == 200, r.text
    assert r.json()["region"] == region and r.json()["source"] == "mqtt"
    # nginx carried it: its access log has the WebSocket handshake on /mqtt.
    assert '"GET /mqtt HTTP/1.1" 101' in Path(edge.nginx.settings.access_log).read_text()


CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


@dataclass
class EdgePage:
    """A browser page on the edge that records CSP violations and console output."""

    page: Page
    console: list[str]

    async def login(self, username: str) -> None:
        await self.page.goto("/monitor/")
        await self.page.get_by_test_id("login-username").fill(username)
        await self.page.get_by_test_id("login-password").fill(PASSWORD)
        await self.page.get_by_test_id("login-submit").click()
        await expect(self.page.get_by_test_id("current-user")).to_contain_text(username)

    async def assert_no_csp_violations(self) -> None:
        violations = await self.page.evaluate("window.__cspViolations")
        assert violations == [], violations
        assert not [m for m in self.console if "Content Security Policy" in m], self.console


@pytest.fixture
async def edge_page(edge: Edge, browser: Browser) -> AsyncIterator[EdgePage]:
    context = await browser.new_context(base_url=edge.url, ignore_https_errors=True)
    await context.add_init_script(CSP_WATCH)
    page = await context.new_page()
    watched = EdgePage(page, [])
    page.on("console", lambda m: watched.console.append(m.text))
    page.on("pageerror", lambda exc: watched.console.append(f"pageerror: {exc}"))
    yield watched
    await context.close()


async def test_monitor_loads_through_nginx_under_the_csp_and_goes_live(edge: Edge, edge_page: EdgePage) -> None:
    region = unique_region()
    edge.stack.create_device(unique_pid("csp"), region)
    operator = f"op-{uuid.uuid4().hex[:6]}"
    edge.stack.create_user(operator, "operator", region, password=PASSWORD)

    await edge_page.login(operator)
    page = edge_page.page
    await expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "live")
    await expect(page.locator(".leaflet-container")).to_be_visible()
    await edge_page.assert_no_csp_violations()


async def test_admin_screens_load_through_nginx_under_the_csp(edge: Edge, edge_page: EdgePage) -> None:
    admin = f"admin-{uuid.uuid4().hex[:6]}"
    edge.stack.create_user(admin, "admin", password=PASSWORD)

    await edge_page.login(admin)
    page = edge_page.page
    # The admin screens call the allowlisted admin API from the admin's browser (127.0.0.1 here).
    async with page.expect_response(lambda r: r.url.split("?")[0].endswith("/api/devices")) as devices:
        await page.get_by_test_id("nav-admin").click()
    await expect(page.get_by_test_id("admin-nav")).to_be_visible()
    assert (await devices.value).status == 200
    # A deep link straight into an admin screen is the SPA fallback's index.html.
    async with page.expect_response(lambda r: r.url.split("?")[0].endswith("/api/users")) as users:
        await page.goto("/monitor/admin/users")
    await expect(page.get_by_test_id("admin-nav")).to_be_visible()
    assert (await users.value).status == 200
    await edge_page.assert_no_csp_violations()
