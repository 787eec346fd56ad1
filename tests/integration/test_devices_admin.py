"""``/api/devices`` against real PostgreSQL and ``naboom serve``: the fleet and its keys, audited."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.integration.api_helpers import Api, assert_problem
from tests.support import Server, sos, unique_pid


@pytest.fixture(scope="module")
def admin(server: Server) -> Api:
    return Api(server.stack, server.stack.admin())


@pytest.fixture(scope="module")
def region(admin: Api) -> str:
    return admin.new_region()


def _create(admin: Api, region: str, **extra: Any) -> dict[str, Any]:
    return dict(admin.ok("POST", "/api/devices", {"pid": unique_pid(), "region": region, **extra}, status=201))


def _audit(admin: Api, pid: str) -> list[dict[str, Any]]:
    """The device's audit entries, oldest first."""
    return list(reversed(admin.ok("GET", f"/api/audit?target_type=device&target_id={pid}")["items"]))


async def test_created_device_gets_kid_1_and_a_secret_that_signs_accepted_sos(server: Server, admin: Api, region: str) -> None:
    r = admin.post("/api/devices", {"pid": (pid := unique_pid()), "region": region, "label": "Gate 3"})
    assert r.status_code == 201, r.text
    creds = r.json()
    assert set(creds) == {"pid", "kid", "secret"} and creds["pid"] == pid and creds["kid"] == 1
    assert server.stack.submit(sos(creds)).status_code == 201

    (entry,) = _audit(admin, pid)
    assert entry["action"] == "device.create" and entry["actor"] == admin.ok("GET", "/api/auth/me")["username"]
    assert entry["detail"] == {"region": region, "label": "Gate 3", "kid": 1}


async def test_device_creation_needs_an_existing_region_and_a_new_pid(admin: Api, region: str) -> None:
    problem = assert_problem(admin.post("/api/devices", {"pid": unique_pid(), "region": "ZA-nowhere"}), 400)
    assert "ZA-nowhere" in problem["detail"]
    creds = _create(admin, region)
    assert_problem(admin.post("/api/devices", {"pid": creds["pid"], "region": region}), 409)


@pytest.mark.parametrize(
    "extra",
    [{"secret": "x"}, {"kid": 7}, {"id": "00000000-0000-0000-0000-000000000001"}, {"active": False}, {"keys": []}],
    ids=["secret", "kid", "id", "active", "keys"],
)
async def test_device_creation_refuses_fields_a_client_may_not_set(admin: Api, region: str, extra: dict[str, Any]) -> None:
    pid = unique_pid()
    problem = assert_problem(admin.post("/api/devices", {"pid": pid, "region": region, **extra}), 400)
    assert next(iter(extra)) in problem["detail"] + str(problem.get("errors"))
    assert_problem(admin.get(f"/api/devices/{pid}"), 404)


async def test_rotation_ignores_a_client_supplied_secret_and_kid(admin: Api, region: str) -> None:
    creds = _create(admin, region)
    rotated = admin.ok("POST", f"/api/devices/{creds['pid']}/rotate", {"secret": "mine", "kid": 99}, status=201)
    assert rotated["kid"] == 2 and rotated["secret"] not in ("mine", creds["secret"])


async def test_list_and_detail_show_last_seen_and_last_message_and_keys_without_secrets(
    server: Server, admin: Api, region: str
) -> None:
    creds = _create(admin, region)
    before = admin.ok("GET", f"/api/devices/{creds['pid']}")
    assert before["last_seen_at"] is None and before["last_message"] is None
    assert before["keys"] == [
        {"kid": 1, "state": "current", "grace_until": None, "created_at": before["keys"][0]["created_at"]}
    ]

    assert server.stack.submit(sos(creds, msg="Inbrekers by die hek")).status_code == 201
    detail = admin.ok("GET", f"/api/devices/{creds['pid']}")
    assert detail["last_seen_at"] is not None and detail["last_message"] == "Inbrekers by die hek"
    listed = admin.ok("GET", "/api/devices?limit=500")
    (row,) = [d for d in listed["items"] if d["pid"] == creds["pid"]]
    assert row == detail
    assert creds["secret"] not in str(detail) and "secret" not in detail
    assert_problem(admin.get(f"/api/devices/{unique_pid()}"), 404)


async def test_rotation_keeps_the_old_key_in_grace_and_is_audited_without_the_secret(
    server: Server, admin: Api, region: str
) -> None:
    creds = _create(admin, region)
    rotated = admin.ok("POST", f"/api/devices/{creds['pid']}/rotate", status=201)
    assert rotated["kid"] == 2
    keys = {k["kid"]: k for k in admin.ok("GET", f"/api/devices/{creds['pid']}")["keys"]}
    assert keys[1]["state"] == "grace" and keys[1]["grace_until"] is not None and keys[2]["state"] == "current"
    assert server.stack.submit(sos(creds)).status_code == 201
    # The second SOS may attach to the device's open incident; either way it is accepted.
    assert server.stack.submit(sos(rotated)).is_success

    entry = _audit(admin, creds["pid"])[-1]
    assert entry["action"] == "device.rotate" and entry["detail"]["kid"] == 2
    assert rotated["secret"] not in str(entry) and creds["secret"] not in str(entry)


async def test_revoked_key_is_refused_at_once_even_inside_its_grace_period(
    server: Server, admin: Api, region: str
) -> None:
    creds = _create(admin, region)
    rotated = admin.ok("POST", f"/api/devices/{creds['pid']}/rotate", status=201)
    device = admin.ok("POST", f"/api/devices/{creds['pid']}/keys/1/revoke", status=200)
    assert {k["kid"]: k["state"] for k in device["keys"]} == {1: "revoked", 2: "current"}

    refused = server.stack.submit(sos(creds))
    assert assert_problem(refused, 401)["reason"] == "revoked_kid"
    assert server.stack.submit(sos(rotated)).status_code == 201

    assert_problem(admin.post(f"/api/devices/{creds['pid']}/keys/1/revoke"), 409)
    assert_problem(admin.post(f"/api/devices/{creds['pid']}/keys/9/revoke"), 404)
    assert_problem(admin.post(f"/api/devices/{unique_pid()}/keys/1/revoke"), 404)
    entry = _audit(admin, creds["pid"])[-1]
    assert entry["action"] == "device.revoke_key" and entry["detail"] == {"kid": 1}


async def test_deactivated_device_is_refused_until_activated_again(server: Server, admin: Api, region: str) -> None:
    creds = _create(admin, region)
    assert admin.ok("POST", f"/api/devices/{creds['pid']}/deactivate", status=200)["active"] is False
    assert assert_problem(server.stack.submit(sos(creds)), 403)["reason"] == "inactive_device"
    assert admin.ok("POST", f"/api/devices/{creds['pid']}/activate", status=200)["active"] is True
    assert server.stack.submit(sos(creds)).status_code == 201
    assert [e["action"] for e in _audit(admin, creds["pid"])] == ["device.create", "device.deactivate", "device.activate"]
    assert_problem(admin.post(f"/api/devices/{unique_pid()}/deactivate"), 404)


async def test_rejection_log_of_a_device_lists_only_its_own_refusals(server: Server, admin: Api, region: str) -> None:
    creds, other = _create(admin, region), _create(admin, region)
    admin.ok("POST", f"/api/devices/{creds['pid']}/deactivate")
    assert server.stack.submit(sos(creds)).status_code == 403
    bad = sos(creds, nonce=uuid.uuid4().hex)
    bad["sig"] = sos(other)["sig"]
    admin.ok("POST", f"/api/devices/{creds['pid']}/activate")
    assert server.stack.submit(bad).status_code == 401
    assert server.stack.submit(sos(other, kid=5)).status_code == 401

    page = admin.ok("GET", f"/api/devices/{creds['pid']}/rejections")
    assert [r["reason"] for r in page["items"]] == ["bad_signature", "inactive_device"] and page["total"] == 2
    assert all(r["pid"] == creds["pid"] for r in page["items"])
    assert bad["sig"] not in str(page)
    only = admin.ok("GET", f"/api/devices/{creds['pid']}/rejections?reason=inactive_device")
    assert [r["reason"] for r in only["items"]] == ["inactive_device"]
    assert_problem(admin.get(f"/api/devices/{unique_pid()}/rejections"), 404)


async def test_device_admin_is_refused_to_operators_and_viewers(server: Server, admin: Api, region: str) -> None:
    creds = _create(admin, region)
    operator = admin.login_as(admin.new_user("operator", region))
    viewer = admin.login_as(admin.new_user("viewer", region))
    pid = creds["pid"]
    for api in (operator, viewer):
        assert_problem(api.get("/api/devices"), 403)
        assert_problem(api.get(f"/api/devices/{pid}"), 403)
        assert_problem(api.get(f"/api/devices/{pid}/rejections"), 403)
        assert_problem(api.post("/api/devices", {"pid": unique_pid(), "region": region}), 403)
        for action in ("rotate", "deactivate", "activate", "keys/1/revoke"):
            assert_problem(api.post(f"/api/devices/{pid}/{action}"), 403)
    assert admin.ok("GET", f"/api/devices/{pid}")["keys"][0]["state"] == "current"
    assert [e["action"] for e in _audit(admin, pid)] == ["device.create"]
