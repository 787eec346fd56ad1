"""Sessions against real PostgreSQL: Bearer and cookie, CSRF, logout, expiry, live role changes, throttling."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.integration.api_helpers import PASSWORD, Api, assert_problem, session_id
from tests.support import Server, psql


@pytest.fixture(scope="module")
def admin(server: Server) -> Api:
    return Api(server.stack, server.stack.admin())


def _login(server: Server, username: str, password: str = PASSWORD, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server.stack.base_url}/api/auth/login", json={"username": username, "password": password}, headers=headers
    )


@contextmanager
def _browser(server: Server, username: str) -> Iterator[tuple[httpx.Client, str]]:
    """A cookie-holding client logged in as ``username`` and its CSRF token (from the readable cookie)."""
    with httpx.Client(base_url=server.stack.base_url) as client:
        r = client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        assert "naboom_session" in client.cookies and "naboom_csrf" in client.cookies
        yield client, client.cookies["naboom_csrf"]


def _region_body() -> dict[str, str]:
    code = f"ZA-{uuid.uuid4().hex[:6]}"
    return {"code": code, "name": code}


async def test_login_returns_a_bearer_token_that_authenticates_requests(server: Server, admin: Api) -> None:
    user = admin.new_user("operator", admin.new_region())
    r = _login(server, user["username"])
    assert r.status_code == 200
    body = r.json()
    assert body["username"] == user["username"] and body["role"] == "operator"
    me = Api(server.stack, body["token"]).ok("GET", "/api/auth/me")
    assert me["id"] == user["id"] and me["regions"] == user["regions"]
    # The session cookie is HttpOnly and SameSite=Strict; the CSRF cookie is readable by the page.
    cookies = r.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookies if c.startswith("naboom_session="))
    csrf_cookie = next(c for c in cookies if c.startswith("naboom_csrf="))
    assert "HttpOnly" in session_cookie and "samesite=strict" in session_cookie.lower()
    assert "HttpOnly" not in csrf_cookie


async def test_cookie_session_authenticates_get_requests(server: Server, admin: Api) -> None:
    user = admin.new_user("admin")
    with _browser(server, user["username"]) as (browser, _):
        r = browser.get("/api/auth/me")
        assert r.status_code == 200 and r.json()["username"] == user["username"]
        assert browser.get("/api/users").status_code == 200


async def test_cookie_session_unsafe_method_needs_the_csrf_header(server: Server, admin: Api) -> None:
    user = admin.new_user("admin")
    with _browser(server, user["username"]) as (browser, csrf):
        missing = browser.post("/api/regions", json=_region_body())
        assert "csrf" in assert_problem(missing, 403)["detail"].lower()
        wrong = browser.post("/api/regions", json=_region_body(), headers={"X-CSRF-Token": "not-" + csrf})
        assert_problem(wrong, 403)
        body = _region_body()
        right = browser.post("/api/regions", json=body, headers={"X-CSRF-Token": csrf})
        assert right.status_code == 201, right.text
    # Nothing was created by the refused requests.
    codes = {r["code"] for r in admin.ok("GET", "/api/regions")}
    assert body["code"] in codes


async def test_bearer_token_needs_no_csrf_header_on_unsafe_methods(server: Server, admin: Api) -> None:
    body = _region_body()
    r = admin.post("/api/regions", body)
    assert r.status_code == 201, r.text
    assert r.json()["code"] == body["code"]


async def test_logout_ends_the_session_for_its_token_and_its_cookie(server: Server, admin: Api) -> None:
    user = admin.new_user("operator", admin.new_region())
    with _browser(server, user["username"]) as (browser, csrf):
        token = browser.cookies["naboom_session"]
        api = Api(server.stack, token)
        assert api.get("/api/auth/me").status_code == 200
        assert browser.get("/api/auth/me").status_code == 200
        out = browser.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 200, out.text
        # The answer clears the cookies, but even a client that keeps them is refused.
        assert "logged out" in assert_problem(api.get("/api/auth/me"), 401)["detail"]
        kept = httpx.get(f"{server.stack.base_url}/api/auth/me", cookies={"naboom_session": token})
        assert_problem(kept, 401)


async def test_logout_with_bearer_token_ends_that_session_only(server: Server, admin: Api) -> None:
    user = admin.new_user("operator", admin.new_region())
    first, second = admin.login_as(user), admin.login_as(user)
    assert first.post("/api/auth/logout").status_code == 200
    assert_problem(first.get("/api/auth/me"), 401)
    assert second.get("/api/auth/me").status_code == 200


async def test_expired_session_is_refused_with_401_saying_expired(server: Server, admin: Api) -> None:
    user = admin.new_user("operator", admin.new_region())
    api = admin.login_as(user)
    assert api.get("/api/auth/me").status_code == 200
    assert server.stack.database_url is not None
    psql(
        server.stack.database_url,
        f"UPDATE auth_session SET expires_at = now() - interval '1 second' WHERE id = '{session_id(api.token or '')}'",
    )
    problem = assert_problem(api.get("/api/auth/me"), 401)
    assert "expired" in problem["detail"]
    cookie = httpx.get(f"{server.stack.base_url}/api/auth/me", cookies={"naboom_session": api.token or ""})
    assert "expired" in assert_problem(cookie, 401)["detail"]


async def test_role_change_takes_effect_on_the_next_request_of_a_live_session(server: Server, admin: Api) -> None:
    region = admin.new_region()
    user = admin.new_user("operator", region)
    api = admin.login_as(user)
    assert_problem(api.get("/api/devices"), 403)

    admin.ok("PATCH", f"/api/users/{user['id']}", {"role": "admin"})
    assert api.get("/api/devices").status_code == 200
    assert api.get("/api/auth/me").json()["role"] == "admin"

    admin.ok("PATCH", f"/api/users/{user['id']}", {"role": "viewer"})
    assert_problem(api.get("/api/devices"), 403)
    assert api.get("/api/auth/me").json()["role"] == "viewer"


async def test_deactivated_user_is_refused_with_401_and_cannot_log_in(server: Server, admin: Api) -> None:
    user = admin.new_user("operator", admin.new_region())
    api = admin.login_as(user)
    assert api.get("/api/auth/me").status_code == 200

    admin.ok("PATCH", f"/api/users/{user['id']}", {"active": False})
    assert_problem(api.get("/api/auth/me"), 401)
    assert_problem(_login(server, user["username"]), 401)

    # Reactivation does not revive the old session; a new login works.
    admin.ok("PATCH", f"/api/users/{user['id']}", {"active": True})
    assert_problem(api.get("/api/auth/me"), 401)
    assert _login(server, user["username"]).status_code == 200


async def test_repeated_failed_logins_are_throttled_with_429_and_retry_after(server: Server, admin: Api) -> None:
    locked = admin.new_user("operator", admin.new_region())
    bystander = admin.new_user("operator", admin.new_region())
    max_failures = 5  # NABOOM_LOGIN_MAX_FAILURES default

    for _ in range(max_failures):
        assert_problem(_login(server, locked["username"], "wrong-password-1"), 401)
    refused = _login(server, locked["username"], "wrong-password-1")
    problem = assert_problem(refused, 429)
    retry_after = int(refused.headers["Retry-After"])
    assert 0 < retry_after <= 900 and problem["retry_after"] == retry_after

    # The right password does not get through while the lock lasts.
    still = _login(server, locked["username"])
    assert_problem(still, 429)
    assert "token" not in still.json() and "set-cookie" not in still.headers

    # Another username from the same address is not affected.
    assert _login(server, bystander["username"]).status_code == 200
