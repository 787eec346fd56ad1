"""HTTP hygiene against ``naboom serve``: CORS, allowed hosts, trusted proxies, problem details everywhere.

Two servers share one PostgreSQL database: ``server`` runs with the defaults (NABOOM_TRUSTED_PROXIES
unset: loopback, where nginx runs, is trusted) and ``strict`` with a proxy address that is not
ours, one allowed origin and a wildcard host.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.api_helpers import PASSWORD, Api, assert_problem
from tests.support import Server, Stack, free_port

MONITOR_ORIGIN = "https://monitor.naboom.example"


@pytest.fixture(scope="module")
def strict(real_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    stack = dataclasses.replace(
        real_stack,
        http_port=free_port(),
        embedded_mqtt_port=free_port(),
        embedded_mqtt_ws_port=free_port(),
        client_id=f"naboom-test-{uuid.uuid4().hex[:8]}",
        extra={
            "NABOOM_TRUSTED_PROXIES": "192.0.2.10",
            "NABOOM_ALLOWED_ORIGINS": MONITOR_ORIGIN,
            "NABOOM_ALLOWED_HOSTS": "127.0.0.1,*.naboom.example",
        },
    )
    srv = Server(stack, tmp_path_factory.mktemp("strict-logs") / "serve.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def admin(server: Server) -> Api:
    return Api(server.stack, server.stack.admin())


def _login(stack: Stack, username: str, password: str, client_ip: str) -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/api/auth/login",
        json={"username": username, "password": password},
        headers={"X-Forwarded-For": client_ip},
    )


# CORS ---------------------------------------------------------------------------------------


def _preflight(stack: Stack, origin: str) -> httpx.Response:
    return httpx.options(
        f"{stack.base_url}/api/incidents",
        headers={"Origin": origin, "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "Authorization"},
    )


async def test_cors_answers_an_allowed_origin_and_ignores_a_foreign_one(server: Server, admin: Api) -> None:
    stack = server.stack
    own = f"http://localhost:{stack.http_port}"
    allowed = _preflight(stack, own)
    assert allowed.status_code in (200, 204)
    assert allowed.headers["access-control-allow-origin"] == own
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    got = admin.request("GET", "/api/incidents", headers={"Origin": own})
    assert got.status_code == 200 and got.headers["access-control-allow-origin"] == own

    for foreign in ("https://evil.example", f"http://localhost:{stack.http_port}.evil.example", "null"):
        assert "access-control-allow-origin" not in _preflight(stack, foreign).headers
        r = admin.request("GET", "/api/incidents", headers={"Origin": foreign})
        assert "access-control-allow-origin" not in r.headers


async def test_cors_follows_naboom_allowed_origins(strict: Server) -> None:
    stack = strict.stack
    assert _preflight(stack, MONITOR_ORIGIN).headers["access-control-allow-origin"] == MONITOR_ORIGIN
    # The defaults are replaced, not extended.
    assert "access-control-allow-origin" not in _preflight(stack, f"http://127.0.0.1:{stack.http_port}").headers


# Allowed hosts --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/incidents", "/api/auth/login", "/monitoring/health/", "/schema/openapi.json"])
async def test_a_host_not_served_here_is_refused_with_400_problem_details(server: Server, path: str) -> None:
    r = httpx.get(f"{server.stack.base_url}{path}", headers={"Host": "evil.example"})
    assert "NABOOM_ALLOWED_HOSTS" in assert_problem(r, 400)["detail"]
    assert httpx.get(f"{server.stack.base_url}/monitoring/health/", headers={"Host": "localhost"}).status_code == 200


async def test_allowed_hosts_take_wildcards_for_subdomains_only(strict: Server) -> None:
    url = f"{strict.stack.base_url}/monitoring/health/"
    assert httpx.get(url, headers={"Host": f"ops.naboom.example:{strict.stack.http_port}"}).status_code == 200
    for host in ("naboom.example.evil.com", "localhost", "evilnaboom.example"):
        assert_problem(httpx.get(url, headers={"Host": host}), 400)


# The client address behind proxies ------------------------------------------------------------


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored_by_the_login_throttle(strict: Server) -> None:
    stack = strict.stack
    admin = Api(stack, stack.login(_new_admin(stack)))
    user = admin.new_user("operator", admin.new_region())
    # Each failure claims another client address; all of them are the peer's own (127.0.0.1).
    for n in range(5):
        assert_problem(_login(stack, user["username"], "wrong-password-1", f"203.0.113.{n}"), 401)
    assert_problem(_login(stack, user["username"], PASSWORD, "203.0.113.99"), 429)

    admin.request("POST", "/api/regions", json={"code": (code := f"ZA-{uuid.uuid4().hex[:6]}"), "name": code},
                  headers={"X-Forwarded-For": "203.0.113.50"})
    (entry,) = admin.ok("GET", f"/api/audit?target_id={code}")["items"]
    assert entry["ip"] == "127.0.0.1"


async def test_x_forwarded_for_from_a_trusted_proxy_is_the_client_address_for_the_login_throttle(
    server: Server, admin: Api
) -> None:
    stack = server.stack
    user = admin.new_user("operator", admin.new_region())
    for _ in range(5):
        assert_problem(_login(stack, user["username"], "wrong-password-1", "198.51.100.7"), 401)
    assert_problem(_login(stack, user["username"], PASSWORD, "198.51.100.7"), 429)
    # Another client behind the same proxy is not locked out.
    assert _login(stack, user["username"], PASSWORD, "198.51.100.8").status_code == 200

    code = f"ZA-{uuid.uuid4().hex[:6]}"
    admin.request("POST", "/api/regions", json={"code": code, "name": code}, headers={"X-Forwarded-For": "198.51.100.9"})
    (entry,) = admin.ok("GET", f"/api/audit?target_id={code}")["items"]
    assert entry["ip"] == "198.51.100.9"


def _new_admin(stack: Stack) -> str:
    name = f"admin-{uuid.uuid4().hex[:8]}"
    stack.create_user(name, "admin")
    return name


# Problem details everywhere -----------------------------------------------------------------


async def test_unknown_paths_wrong_methods_and_bad_input_answer_problem_details(server: Server, admin: Api) -> None:
    assert_problem(admin.get("/api/no-such-thing"), 404)
    assert_problem(admin.request("DELETE", "/api/regions"), 405)
    bad = assert_problem(admin.get("/api/incidents", limit=0), 400)
    assert bad["errors"]
    assert_problem(admin.request("POST", "/api/regions", content=b"{not json", headers={"Content-Type": "application/json"}), 400)
    assert_problem(admin.get(f"/api/incidents/{uuid.uuid4()}"), 404)


async def test_options_without_origin_is_authenticated_like_any_request_and_never_a_500(
    server: Server, admin: Api
) -> None:
    operator = admin.login_as(admin.new_user("operator", admin.new_region()))
    for path in ("/api/devices", "/api/users", "/api/audit", "/api/ingest/stats"):
        assert_problem(Api(server.stack, None).request("OPTIONS", path), 401)
        assert_problem(operator.request("OPTIONS", path), 403)
        allowed = admin.request("OPTIONS", path)
        # (Litestar 2 may list only some of the methods in Allow: litestar-org/litestar#4169.)
        assert allowed.status_code == 204 and "OPTIONS" in allowed.headers["allow"]
    assert operator.request("OPTIONS", "/api/incidents").status_code == 204
