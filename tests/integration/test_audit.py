"""The audit log against real PostgreSQL: who did what, when and from where; admins only; queryable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.api_helpers import Api, assert_problem
from tests.support import Server, unique_pid, unique_region


@pytest.fixture(scope="module")
def admin(server: Server) -> Api:
    return Api(server.stack, server.stack.admin())


def _entries(admin: Api, **params: str) -> list[dict]:
    r = admin.get("/api/audit", limit=500, **params)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_an_admin_action_is_recorded_with_actor_role_action_target_time_and_address(admin: Api) -> None:
    me = admin.ok("GET", "/api/auth/me")
    before = datetime.now(UTC)
    code = unique_region()
    admin.ok("POST", "/api/regions", {"code": code, "name": "Waterberg"}, status=201)
    (entry,) = _entries(admin, target_type="region", target_id=code)
    assert entry["actor"] == me["username"] and entry["role"] == "admin"
    assert entry["action"] == "region.create" and entry["detail"] == {"name": "Waterberg"}
    assert entry["ip"] == "127.0.0.1"
    at = datetime.fromisoformat(entry["at"])
    assert before - timedelta(seconds=5) <= at <= datetime.now(UTC) + timedelta(seconds=5)


async def test_logins_and_logouts_are_recorded(server: Server, admin: Api) -> None:
    user = admin.new_user("operator", admin.new_region())
    session = admin.login_as(user)
    session.ok("POST", "/api/auth/logout")
    actions = [e["action"] for e in _entries(admin, actor=user["username"])]
    assert actions == ["auth.logout", "auth.login"]


async def test_a_refused_action_leaves_no_entry(admin: Api) -> None:
    region = admin.new_region()
    pid = unique_pid()
    admin.ok("POST", "/api/devices", {"pid": pid, "region": region}, status=201)
    assert_problem(admin.post("/api/devices", {"pid": pid, "region": region}), 409)
    assert_problem(admin.post(f"/api/devices/{pid}/keys/7/revoke"), 404)
    assert [e["action"] for e in _entries(admin, target_id=pid)] == ["device.create"]


async def test_entries_filter_by_actor_action_target_and_time_and_page_newest_first(admin: Api) -> None:
    other = admin.login_as(admin.new_user("admin"))
    other_name = other.ok("GET", "/api/auth/me")["username"]
    start = datetime.now(UTC) - timedelta(seconds=1)
    codes = [unique_region() for _ in range(3)]
    for code in codes:
        other.ok("POST", "/api/regions", {"code": code, "name": code}, status=201)
    other.ok("PATCH", f"/api/regions/{codes[0]}", {"name": "Renamed"})

    mine = _entries(admin, actor=other_name, target_type="region")
    assert [(e["action"], e["target_id"]) for e in mine] == [
        ("region.update", codes[0]), ("region.create", codes[2]), ("region.create", codes[1]), ("region.create", codes[0])
    ]
    assert [e["target_id"] for e in _entries(admin, actor=other_name, action="region.update")] == [codes[0]]
    assert _entries(admin, actor=other_name, since=datetime.now(UTC).isoformat()) == []
    assert len(_entries(admin, actor=other_name, target_type="region", since=start.isoformat())) == 4
    assert _entries(admin, actor=other_name, until=start.isoformat()) == []

    first = admin.ok("GET", f"/api/audit?actor={other_name}&target_type=region&limit=2&offset=0")
    second = admin.ok("GET", f"/api/audit?actor={other_name}&target_type=region&limit=2&offset=2")
    assert first["total"] == second["total"] == 4
    assert [e["id"] for e in first["items"] + second["items"]] == [e["id"] for e in mine]


async def test_audit_log_is_for_admins_only(server: Server, admin: Api) -> None:
    region = admin.new_region()
    for role in ("operator", "viewer"):
        assert_problem(admin.login_as(admin.new_user(role, region)).get("/api/audit"), 403)
    assert_problem(Api(server.stack, None).get("/api/audit"), 401)
