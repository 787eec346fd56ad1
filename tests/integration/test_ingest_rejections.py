"""One test per rejection reason of CONTRACT §1, over real Mosquitto, PostgreSQL and Redis.

Each refused message must leave no incident, be counted once under its reason in
``GET /api/ingest/stats`` and appear in the admin rejection log without any signature material.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from naboom.ingest.schemas import Reason
from naboom.ingest.signing import signed_payload
from tests.integration.ingest_helpers import (
    Admin,
    assert_no_signature,
    incidents_of,
    random_secret,
    sql_literal,
    wait_for_incidents,
)
from tests.support import (
    Server,
    Stack,
    psql,
    publish,
    publisher,
    sos,
    unique_pid,
    unique_region,
    wait_for_sync,
)

DAY = 24 * 3600


@pytest.fixture(scope="module")
def admin(server: Server) -> Admin:
    return Admin.create(server.stack)


@pytest.fixture
def device(server: Server) -> dict[str, Any]:
    """A fresh, active device with its kid 1 credentials."""
    return server.stack.create_device(unique_pid(), unique_region())


@pytest.fixture(scope="module")
def mqtt(server: Server) -> Iterator[Any]:
    """One publishing client for the module (QoS 1, waits for the broker's PUBACK)."""
    with publisher(*server.stack.mqtt_address) as client:
        yield client


def _rejected_once(
    admin: Admin,
    mqtt: Any,
    reason: Reason,
    body: bytes | str | dict[str, Any],
    *,
    topic: str,
    logged_pid: str | None,
    sig: str,
    watch_pids: tuple[str, ...],
) -> dict[str, Any]:
    """Publish one message, wait until it is refused, and check count, log row and incidents."""
    stack = admin.stack
    before = admin.rejected(reason)
    total_before = admin.incident_total()
    seen = {r["id"] for r in admin.rejections(reason, pid=logged_pid, topic=topic)}

    publish(mqtt, topic, body)

    def refused() -> list[dict[str, Any]] | None:
        fresh = [r for r in admin.rejections(reason, pid=logged_pid, topic=topic) if r["id"] not in seen]
        return fresh if fresh and admin.rejected(reason) > before else None

    rows = wait_for_sync(refused, what=f"a {reason} rejection on {topic}")

    assert admin.rejected(reason) == before + 1, "the reason must be counted exactly once"
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["reason"] == reason.value
    assert row["transport"] == "mqtt"
    assert row["topic"] == topic
    assert row["pid"] == logged_pid
    assert row["detail"]
    assert_no_signature(row, sig)
    assert admin.incident_total() == total_before, "a refused message must not create an incident"
    for pid in watch_pids:
        assert incidents_of(stack, pid) == 0, f"incident stored for {pid}"
    return row


def _rejected_on_own_topic(
    admin: Admin,
    mqtt: Any,
    reason: Reason,
    device: dict[str, Any],
    payload: dict[str, Any],
    body: str | None = None,
) -> dict[str, Any]:
    """:func:`_rejected_once` for a message of ``device`` on its own topic, logged under its pid.

    ``body`` is what goes on the wire, ``payload`` (the signed SOS) unless given.
    """
    pid = device["pid"]
    return _rejected_once(
        admin, mqtt, reason, payload if body is None else body,
        topic=f"panic/ingest/{pid}", logged_pid=pid, sig=payload["sig"], watch_pids=(pid,),
    )


def _set_device(stack: Stack, pid: str, assignment: str) -> None:
    assert stack.database_url is not None
    psql(stack.database_url, f"UPDATE device SET {assignment} WHERE pid = {sql_literal(pid)}")


def _set_key(stack: Stack, pid: str, kid: int, assignment: str) -> None:
    assert stack.database_url is not None
    psql(
        stack.database_url,
        f"UPDATE device_key SET {assignment} WHERE kid = {kid} AND device_id = "
        f"(SELECT id FROM device WHERE pid = {sql_literal(pid)})",
    )


def test_malformed_json_is_refused_counted_and_logged_without_signature(
    admin: Admin, mqtt: Any, device: dict[str, Any]
) -> None:
    payload = sos(device)
    truncated = json.dumps(payload)[:-1]  # cut off before the closing brace, signature intact
    _rejected_on_own_topic(admin, mqtt, Reason.MALFORMED_JSON, device, payload, body=truncated)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"lng": None}, id="lat-without-lng"),
        pytest.param({"ts": "1732590725"}, id="ts-as-string"),
        pytest.param({"lat": 123.0}, id="lat-out-of-range"),
    ],
)
def test_invalid_schema_is_refused_counted_and_logged_without_signature(
    admin: Admin, mqtt: Any, device: dict[str, Any], change: dict[str, Any]
) -> None:
    fields = {"pid": device["pid"], "ts": int(time.time()), "nonce": uuid.uuid4().hex, "msg": "SOS",
              "lat": -24.53, "lng": 28.71, "kid": device["kid"]}
    fields.update(change)
    fields = {k: v for k, v in fields.items() if v is not None}
    payload = signed_payload(fields, device["secret"])  # correctly signed: only the schema is wrong
    _rejected_on_own_topic(admin, mqtt, Reason.INVALID_SCHEMA, device, payload)


def test_topic_pid_mismatch_is_refused_counted_and_logged_without_signature(
    admin: Admin, mqtt: Any, device: dict[str, Any]
) -> None:
    other = admin.stack.create_device(unique_pid(), unique_region())
    payload = sos(device)  # valid for its own device, published on another device's topic
    _rejected_once(
        admin, mqtt, Reason.TOPIC_MISMATCH, payload,
        topic=f"panic/ingest/{other['pid']}", logged_pid=device["pid"], sig=payload["sig"],
        watch_pids=(device["pid"], other["pid"]),
    )


def test_unknown_device_is_refused_counted_and_logged_without_signature(admin: Admin, mqtt: Any) -> None:
    ghost: dict[str, Any] = {"pid": unique_pid("ghost"), "kid": 1, "secret": random_secret()}
    payload = sos(ghost)
    _rejected_on_own_topic(admin, mqtt, Reason.UNKNOWN_DEVICE, ghost, payload)


def test_inactive_device_is_refused_counted_and_logged_without_signature(
    admin: Admin, mqtt: Any, device: dict[str, Any]
) -> None:
    _set_device(admin.stack, device["pid"], "active = false")
    payload = sos(device)
    _rejected_on_own_topic(admin, mqtt, Reason.INACTIVE_DEVICE, device, payload)


def test_unknown_kid_is_refused_counted_and_logged_without_signature(
    admin: Admin, mqtt: Any, device: dict[str, Any]
) -> None:
    payload = sos(device, kid=7)  # signed with the real kid 1 secret, but names a key the device lacks
    _rejected_on_own_topic(admin, mqtt, Reason.UNKNOWN_KID, device, payload)


def test_revoked_kid_is_refused_counted_and_logged_without_signature(
    admin: Admin, mqtt: Any, device: dict[str, Any]
) -> None:
    _set_key(admin.stack, device["pid"], 1, "state = 'revoked'")
    payload = sos(device)
    _rejected_on_own_topic(admin, mqtt, Reason.REVOKED_KID, device, payload)


def test_bad_signature_is_refused_counted_and_logged_without_signature(
    admin: Admin, mqtt: Any, device: dict[str, Any]
) -> None:
    payload = {**sos(device, msg="SOS"), "msg": "ALL CLEAR"}  # changed after signing
    _rejected_on_own_topic(admin, mqtt, Reason.BAD_SIGNATURE, device, payload)


def test_stale_ts_is_refused_counted_and_logged_without_signature(
    admin: Admin, mqtt: Any, device: dict[str, Any]
) -> None:
    payload = sos(device, ts=int(time.time()) - 7 * DAY - 3600)  # an hour outside the 7-day window
    _rejected_on_own_topic(admin, mqtt, Reason.STALE_TS, device, payload)


def test_future_ts_is_refused_counted_and_logged_without_signature(
    admin: Admin, mqtt: Any, device: dict[str, Any]
) -> None:
    payload = sos(device, ts=int(time.time()) + 15 * 60)  # beyond the 5-minute skew
    _rejected_on_own_topic(admin, mqtt, Reason.FUTURE_TS, device, payload)


def test_replayed_nonce_is_refused_counted_and_logged_without_signature(
    admin: Admin, mqtt: Any, device: dict[str, Any]
) -> None:
    stack = admin.stack
    pid, nonce = device["pid"], uuid.uuid4().hex
    publish(mqtt, f"panic/ingest/{pid}", sos(device, nonce=nonce, msg="SOS"))
    wait_for_incidents(stack, pid, 1)
    duplicates_before = admin.duplicates()

    replay = sos(device, nonce=nonce, msg="Vals alarm")  # same pid:nonce, different signed content
    before = admin.rejected(Reason.REPLAYED_NONCE)
    total_before = admin.incident_total()
    publish(mqtt, f"panic/ingest/{pid}", replay)
    rows = wait_for_sync(
        lambda: admin.rejections(Reason.REPLAYED_NONCE, pid=pid) if admin.rejected(Reason.REPLAYED_NONCE) > before
        else None,
        what="a replayed_nonce rejection",
    )

    assert admin.rejected(Reason.REPLAYED_NONCE) == before + 1
    assert len(rows) == 1 and rows[0]["transport"] == "mqtt" and rows[0]["topic"] == f"panic/ingest/{pid}"
    assert_no_signature(rows[0], replay["sig"])
    assert admin.incident_total() == total_before
    assert incidents_of(stack, pid) == 1, "the replay must not add an incident"
    assert admin.duplicates() == duplicates_before, "a replay with other content is not a duplicate"


def test_http_submit_answers_problem_details_for_a_bad_signature_201_then_200_for_a_good_one(
    admin: Admin, device: dict[str, Any]
) -> None:
    stack = admin.stack
    good = sos(device)
    forged = {**good, "lat": -25.0}  # moved after signing
    before = admin.rejected(Reason.BAD_SIGNATURE)

    bad = stack.submit(forged)
    assert bad.status_code == 401, bad.text
    assert bad.headers["content-type"].startswith("application/problem+json")
    problem = bad.json()
    assert problem["status"] == 401
    assert problem["reason"] == "bad_signature"
    assert problem["detail"]
    assert forged["sig"] not in bad.text
    assert admin.rejected(Reason.BAD_SIGNATURE) == before + 1
    logged = [r for r in admin.rejections(Reason.BAD_SIGNATURE, pid=device["pid"]) if r["transport"] == "http"]
    assert len(logged) == 1
    assert_no_signature(logged[0], forged["sig"])
    assert incidents_of(stack, device["pid"]) == 0

    created = stack.submit(good)
    assert created.status_code == 201, created.text
    incident_id = created.json()["incident_id"]
    uuid.UUID(incident_id)

    again = stack.submit(good)
    assert again.status_code == 200, again.text
    assert again.json() == {"incident_id": incident_id}
    assert incidents_of(stack, device["pid"]) == 1
    detail = stack.get(f"/api/incidents/{incident_id}", admin.token)
    assert detail["id"] == incident_id
