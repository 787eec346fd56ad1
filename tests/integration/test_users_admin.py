"""``/api/users`` against real PostgreSQL: admins manage users; hashes never leave; one admin always stays."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import update as sa_update
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from naboom.db import models as m
from naboom.errors import ConflictError
from naboom.users.schemas import UserUpdate
from naboom.users.service import OperatorService
from tests.integration.api_helpers import PASSWORD, Api, assert_problem
from tests.support import Server, psql, wait_for


@pytest.fixture(scope="module")
def admin(server: Server) -> Api:
    return Api(server.stack, server.stack.admin())


def _audit(admin: Api, action: str, target_id: str) -> list[dict]:
    return list(admin.ok("GET", f"/api/audit?action={action}&target_id={target_id}")["items"])


async def test_user_list_and_detail_never_carry_password_hashes(server: Server, admin: Api) -> None:
    created = admin.new_user("viewer", admin.new_region())
    assert server.stack.database_url is not None
    stored_hash = psql(server.stack.database_url, f"SELECT password_hash FROM operator WHERE id = '{created['id']}'")
    assert stored_hash.startswith("$argon2")

    listing = admin.get("/api/users", limit=500)
    detail = admin.get(f"/api/users/{created['id']}")
    for r in (listing, detail):
        assert r.status_code == 200
        assert "$argon2" not in r.text and stored_hash not in r.text and "password" not in r.text
    items = listing.json()["items"]
    assert created["id"] in {u["id"] for u in items}
    assert all(set(u) == {"id", "username", "role", "regions", "active"} for u in items)
    assert set(created) == {"id", "username", "role", "regions", "active"}


def _body(role: str, regions: list[str]) -> dict:
    return {"username": f"u-{uuid.uuid4().hex[:10]}", "password": PASSWORD, "role": role, "regions": regions}


async def test_created_user_can_log_in_with_its_role_and_regions_and_it_is_audited(server: Server, admin: Api) -> None:
    region = admin.new_region()
    body = _body("operator", [region])
    r = admin.post("/api/users", body)
    assert r.status_code == 201, r.text
    user = r.json()
    assert user["role"] == "operator" and user["regions"] == [region] and user["active"] is True

    me = Api(server.stack, server.stack.login(body["username"])).ok("GET", "/api/auth/me")
    assert me["role"] == "operator" and me["regions"] == [region]

    (entry,) = _audit(admin, "user.create", user["id"])
    assert entry["detail"] == {"username": body["username"], "role": "operator", "regions": [region]}
    assert PASSWORD not in str(entry)


async def test_user_creation_refuses_unknown_regions_duplicates_and_missing_regions(admin: Api) -> None:
    region = admin.new_region()
    unknown = assert_problem(admin.post("/api/users", _body("operator", ["ZA-nowhere"])), 400)
    assert "ZA-nowhere" in unknown["detail"]
    assert_problem(admin.post("/api/users", _body("viewer", [])), 400)
    assert_problem(admin.post("/api/users", {**_body("operator", [region]), "password": "short"}), 400)
    assert_problem(admin.post("/api/users", {**_body("operator", [region]), "role": "root"}), 400)

    body = _body("operator", [region])
    assert admin.post("/api/users", body).status_code == 201
    assert_problem(admin.post("/api/users", {**body, "password": "another-pass-1"}), 409)


async def test_user_fields_outside_the_schema_are_refused(admin: Api) -> None:
    region = admin.new_region()
    for extra in ({"id": str(uuid.uuid4())}, {"password_hash": "$argon2id$x"}, {"active": False}):
        problem = assert_problem(admin.post("/api/users", {**_body("operator", [region]), **extra}), 400)
        assert next(iter(extra)) in problem["detail"] + str(problem.get("errors"))
    user = admin.new_user("operator", region)
    for extra in ({"username": "renamed"}, {"password": "new-password-1"}, {"id": str(uuid.uuid4())}):
        assert_problem(admin.patch(f"/api/users/{user['id']}", extra), 400)
    assert admin.ok("GET", f"/api/users/{user['id']}") == user


async def test_patch_changes_role_regions_and_active_and_audits_what_changed(admin: Api) -> None:
    a, b = admin.new_region(), admin.new_region()
    user = admin.new_user("viewer", a)
    changed = admin.ok("PATCH", f"/api/users/{user['id']}", {"role": "operator", "regions": [a, b]})
    assert changed["role"] == "operator" and changed["regions"] == sorted([a, b])
    (entry,) = _audit(admin, "user.update", user["id"])
    assert entry["detail"] == {"username": user["username"], "role": "operator", "regions": sorted([a, b])}

    assert_problem(admin.patch(f"/api/users/{user['id']}", {"regions": ["ZA-nowhere"]}), 400)
    assert_problem(admin.patch(f"/api/users/{user['id']}", {"regions": []}), 400)
    assert_problem(admin.patch(f"/api/users/{uuid.uuid4()}", {"active": False}), 404)
    assert admin.ok("GET", f"/api/users/{user['id']}")["regions"] == sorted([a, b])


async def test_password_reset_ends_every_session_and_the_new_password_works(server: Server, admin: Api) -> None:
    user = admin.new_user("operator", admin.new_region())
    first, second = admin.login_as(user), admin.login_as(user)
    r = admin.post(f"/api/users/{user['id']}/password", {"password": "brand-new-pass-2"})
    assert r.status_code == 200, r.text
    assert "brand-new-pass-2" not in r.text
    for api in (first, second):
        assert_problem(api.get("/api/auth/me"), 401)
    old = httpx.post(f"{server.stack.base_url}/api/auth/login", json={"username": user["username"], "password": PASSWORD})
    assert_problem(old, 401)
    assert admin.login_as(user, "brand-new-pass-2").get("/api/auth/me").status_code == 200
    (entry,) = _audit(admin, "user.password_reset", user["id"])
    assert "brand-new-pass-2" not in str(entry)
    assert_problem(admin.post(f"/api/users/{user['id']}/password", {"password": "short"}), 400)


async def test_the_last_active_admin_cannot_demote_or_deactivate_themselves(server: Server, admin: Api) -> None:
    me = admin.ok("GET", "/api/auth/me")
    # Leave the caller as the only active admin of this database.
    for user in admin.ok("GET", "/api/users?limit=500")["items"]:
        if user["role"] == "admin" and user["active"] and user["id"] != me["id"]:
            admin.ok("PATCH", f"/api/users/{user['id']}", {"active": False})

    region = admin.new_region()
    for change in ({"role": "operator", "regions": [region]}, {"role": "viewer", "regions": [region]}, {"active": False}):
        problem = assert_problem(admin.patch(f"/api/users/{me['id']}", change), 409)
        assert "admin" in problem["detail"]
    assert admin.ok("GET", "/api/auth/me")["role"] == "admin"

    # With a second active admin, the first may step down.
    other = admin.new_user("admin")
    stepped = admin.ok("PATCH", f"/api/users/{me['id']}", {"role": "operator", "regions": [region]})
    assert stepped["role"] == "operator"
    assert_problem(admin.get("/api/users"), 403)

    successor = admin.login_as(other)
    assert_problem(successor.patch(f"/api/users/{other['id']}", {"active": False}), 409)
    successor.ok("PATCH", f"/api/users/{me['id']}", {"role": "admin"})
    assert admin.get("/api/users").status_code == 200


async def test_two_last_admins_deactivating_each_other_at_once_leave_one_active_admin(
    server: Server, admin: Api
) -> None:
    """The second change waits for the first one's row locks, then sees it would leave no admin."""
    first, second = admin.new_user("admin"), admin.new_user("admin")
    db = server.stack.database_url
    assert db is not None
    engine = create_async_engine(db)
    try:
        async with AsyncSession(engine) as one, AsyncSession(engine) as two:
            # Only these two are active admins in this database now.
            await one.execute(
                sa_update(m.Operator)
                .where(m.Operator.role == "admin", m.Operator.id.not_in([uuid.UUID(first["id"]), uuid.UUID(second["id"])]))
                .values(active=False)
            )
            await one.commit()
            await OperatorService(session=one).update_user(uuid.UUID(second["id"]), UserUpdate(active=False))
            racing = asyncio.create_task(
                OperatorService(session=two).update_user(uuid.UUID(first["id"]), UserUpdate(active=False))
            )
            await wait_for(lambda: _waiting_for_a_row_lock(db), what="the second change to wait for the first")
            assert not racing.done()
            await one.commit()
            with pytest.raises(ConflictError, match="no active admin"):
                await racing
            await two.rollback()
    finally:
        await engine.dispose()
    active = psql(db, "SELECT string_agg(username, ',') FROM operator WHERE role = 'admin' AND active")
    assert active == first["username"]
    # The module's admin is needed by the tests after this one.
    psql(db, "UPDATE operator SET active = true WHERE role = 'admin'")


def _waiting_for_a_row_lock(db: str) -> bool:
    name = db.rsplit("/", 1)[1]
    waiting = psql(
        db,
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        f"AND datname = '{name}' AND query ILIKE '%FOR UPDATE%'",
    )
    return int(waiting) > 0


async def test_users_api_is_for_admins_only(server: Server, admin: Api) -> None:
    region = admin.new_region()
    operator = admin.login_as(admin.new_user("operator", region))
    viewer = admin.login_as(admin.new_user("viewer", region))
    target = admin.new_user("viewer", region)
    for api in (operator, viewer):
        assert_problem(api.get("/api/users"), 403)
        assert_problem(api.get(f"/api/users/{target['id']}"), 403)
        assert_problem(api.post("/api/users", _body("admin", [])), 403)
        assert_problem(api.patch(f"/api/users/{target['id']}", {"role": "admin"}), 403)
        assert_problem(api.post(f"/api/users/{target['id']}/password", {"password": "taken-over-1"}), 403)
    assert admin.ok("GET", f"/api/users/{target['id']}")["role"] == "viewer"
    assert_problem(Api(server.stack, None).get("/api/users"), 401)
