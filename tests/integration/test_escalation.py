"""Escalation: each level fires once, in order, at its threshold, and stops when the incident is dealt with.

The clock is the test's: every check runs with an explicit ``now`` (the incident's received time
plus some minutes), so nothing waits for real minutes to pass. Incidents arrive as signed SOS at
a real ``naboom serve``; rules are made through its REST API; the check is the real task with a
real work context (PostgreSQL, the Redis live feed, the Redis task queues), called in this
process or run by a ``naboom worker`` that took it from the Redis broker. Other tests' rules and
incidents share the database, so every assertion looks at this test's incidents only.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from naboom.background.broker import WorkContext, open_work
from naboom.escalation.tasks import check_escalations
from naboom.settings import Settings
from tests.integration.api_helpers import Api
from tests.integration.incident_helpers import act, detail, ok
from tests.integration.live import SseClient
from tests.support import Process, Server, Stack, psql, sos, unique_pid, wait_for, worker

# What an escalation SMS may show while the sender works on it, and once it has.
SENDING_OR_SENT = {"queued", "sending", "retrying", "sent", "delivered"}
TEMPLATE = "L{level} {rule}: #{incident} ({message}) in {region} waiting {minutes} min since {time} at {place} {map} {link}"


@pytest.fixture(scope="module")
async def work(real_stack: Stack) -> AsyncIterator[WorkContext]:
    """The context tasks run with, on the stack's database and Redis, made in this process."""
    async with open_work(Settings.from_env(real_stack.env())) as work:
        yield work.context


@pytest.fixture(scope="module")
def critical_worker(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """``naboom worker --queue critical`` on the stack."""
    process = worker(server.stack, tmp_path_factory.mktemp("worker") / "worker.log", "critical")
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def admin(server: Server) -> Api:
    return Api(server.stack, server.stack.admin())


def _region(admin: Api) -> tuple[str, dict[str, Any], str]:
    """A new region with a device and a signed-in operator of it: ``(region, credentials, token)``."""
    region = admin.new_region()
    device = admin.ok("POST", "/api/devices", {"pid": unique_pid("esc"), "region": region}, status=201)
    operator = admin.new_user("operator", region)
    return region, device, str(admin.login_as(operator).token)


def _level(minutes: int, *targets: str) -> dict[str, Any]:
    return {"threshold_minutes": minutes, "targets": list(targets), "template": TEMPLATE}


def _rule(admin: Api, region: str, condition: str, *levels: dict[str, Any], active: bool = True) -> dict[str, Any]:
    body = {"region": region, "name": f"{condition}-{len(levels)}", "condition": condition, "levels": list(levels),
            "active": active}
    return dict(admin.ok("POST", "/api/escalation-rules", body, status=201))


def _incident(stack: Stack, device: dict[str, Any], token: str) -> tuple[str, datetime]:
    """A new incident from a signed SOS, and when the server received it."""
    r = stack.submit(sos(device, msg="Help at the gate"))
    assert r.status_code == 201, r.text
    incident_id = str(r.json()["incident_id"])
    return incident_id, datetime.fromisoformat(detail(stack, token, incident_id)["created_at"])


async def _check(work: WorkContext, at: datetime) -> None:
    """One run of the periodic check, as if the clock showed ``at``."""
    await check_escalations(work, now=at.isoformat())


def _escalations(stack: Stack, token: str, incident_id: str) -> list[dict[str, Any]]:
    """The ``escalated`` timeline events of an incident, oldest first."""
    return [e for e in detail(stack, token, incident_id)["timeline"] if e["type"] == "escalated"]


def _levels(stack: Stack, token: str, incident_id: str, rule: dict[str, Any] | None = None) -> list[int]:
    return [
        e["payload"]["level"]
        for e in _escalations(stack, token, incident_id)
        if rule is None or e["payload"]["rule_id"] == rule["id"]
    ]


def _messages(stack: Stack, incident_id: str) -> list[dict[str, str]]:
    """The SMS logged for an incident: step, recipient, status and body, by step then recipient."""
    assert stack.database_url is not None
    out = psql(
        stack.database_url,
        "SELECT step || chr(9) || recipient || chr(9) || status || chr(9) || body FROM outbound_message "
        f"WHERE incident_id = '{incident_id}' ORDER BY step, recipient",
    )
    keys = ("step", "recipient", "status", "body")
    return [dict(zip(keys, line.split("\t"), strict=True)) for line in out.splitlines() if line]


def _escalated_live(sse: SseClient, incident_id: str) -> list[dict[str, Any]]:
    return [
        e for e in sse.incidents("incident.updated") if e["id"] == incident_id and e["change"]["type"] == "escalated"
    ]


async def test_levels_fire_in_order_at_their_thresholds_once_each_and_stop_on_acknowledge(
    server: Server, admin: Api, work: WorkContext
) -> None:
    stack = server.stack
    region, device, token = _region(admin)
    rule = _rule(admin, region, "open", _level(5, "+27820000101", "+27820000102"), _level(10, "+27820000103"),
                 _level(15, "+27820000104"))
    incident_id, received = _incident(stack, device, token)
    minutes = lambda n: received + timedelta(minutes=n)  # noqa: E731

    async with SseClient(stack.base_url, token, region) as sse:
        await _check(work, minutes(4) + timedelta(seconds=59))
        assert _escalations(stack, token, incident_id) == [] and _messages(stack, incident_id) == []

        await _check(work, minutes(5))
        (event,) = _escalations(stack, token, incident_id)
        assert event["actor"] == "system"
        assert event["payload"] == {"rule_id": rule["id"], "rule_name": rule["name"], "level": 1,
                                    "threshold_minutes": 5, "recipients": 2}
        sms = _messages(stack, incident_id)
        assert [(m["step"], m["recipient"]) for m in sms] == [
            (f"escalation:{rule['id']}:1", "+27820000101"), (f"escalation:{rule['id']}:1", "+27820000102"),
        ]
        assert all(m["status"] in SENDING_OR_SENT for m in sms), sms
        reference = uuid.UUID(incident_id).hex[:8].upper()  # as the alert SMS names it
        assert sms[0]["body"].startswith(f"L1 {rule['name']}: #{reference} (Help at the gate) in Region {region} ")
        assert "waiting 5 min since " in sms[0]["body"] and " at -24.53000,28.71000 https://" in sms[0]["body"]
        assert sms[0]["body"].endswith(f"/monitor/incidents/{incident_id}")
        (live,) = await wait_for(lambda: _escalated_live(sse, incident_id), what="incident.updated (escalated)")
        assert live["region"] == region and live["status"] == "open"
        assert live["change"]["payload"] == event["payload"] and live["change"]["actor"] == "system"

        await _check(work, minutes(9))
        await _check(work, minutes(5))  # the same minute again: the level has fired already
        assert _levels(stack, token, incident_id) == [1]
        assert len(_messages(stack, incident_id)) == 2

        ok(act(stack, token, incident_id, "acknowledge"))
        await _check(work, minutes(10))
        await _check(work, minutes(20))
        assert _levels(stack, token, incident_id) == [1]
        assert len(_messages(stack, incident_id)) == 2
        assert len(_escalated_live(sse, incident_id)) == 1


async def test_an_unresolved_rule_goes_on_after_acknowledge_and_stops_on_resolve_while_an_open_rule_stops_at_once(
    server: Server, admin: Api, work: WorkContext
) -> None:
    stack = server.stack
    region, device, token = _region(admin)
    unresolved = _rule(admin, region, "unresolved", _level(5, "+27820000201"), _level(10, "+27820000202"),
                       _level(15, "+27820000203"), _level(20, "+27820000204"))
    still_open = _rule(admin, region, "open", _level(13, "+27820000205"))
    incident_id, received = _incident(stack, device, token)

    # A check that runs late fires every level due, in order, in one run.
    await _check(work, received + timedelta(minutes=12))
    first = _escalations(stack, token, incident_id)
    assert [e["payload"]["level"] for e in first] == [1, 2]
    assert first[0]["id"] < first[1]["id"]
    assert [m["recipient"] for m in _messages(stack, incident_id)] == ["+27820000201", "+27820000202"]

    ok(act(stack, token, incident_id, "acknowledge"))
    await _check(work, received + timedelta(minutes=15))
    assert _levels(stack, token, incident_id, unresolved) == [1, 2, 3]
    assert _levels(stack, token, incident_id, still_open) == [], "acknowledged: the open rule is done"

    ok(act(stack, token, incident_id, "resolve"))
    await _check(work, received + timedelta(minutes=30))
    assert _levels(stack, token, incident_id) == [1, 2, 3]
    steps = {m["step"] for m in _messages(stack, incident_id)}
    assert steps == {f"escalation:{unresolved['id']}:{n}" for n in (1, 2, 3)}


async def test_rules_of_other_regions_and_inactive_rules_do_not_fire(
    server: Server, admin: Api, work: WorkContext
) -> None:
    stack = server.stack
    region, device, token = _region(admin)
    other_region = admin.new_region()
    _rule(admin, other_region, "open", _level(1, "+27820000301"))
    inactive = _rule(admin, region, "unresolved", _level(1, "+27820000302"), active=False)
    incident_id, received = _incident(stack, device, token)

    await _check(work, received + timedelta(minutes=30))
    assert _escalations(stack, token, incident_id) == [] and _messages(stack, incident_id) == []

    # The same incident escalates once the rule is switched on: inactivity was what held it.
    admin.ok("PATCH", f"/api/escalation-rules/{inactive['id']}", {"active": True})
    await _check(work, received + timedelta(minutes=30))
    assert _levels(stack, token, incident_id, inactive) == [1]
    assert [m["recipient"] for m in _messages(stack, incident_id)] == ["+27820000302"]


async def test_an_incident_older_than_the_last_threshold_plus_a_day_is_left_alone(
    server: Server, admin: Api, work: WorkContext
) -> None:
    stack = server.stack
    region, device, token = _region(admin)
    rule = _rule(admin, region, "open", _level(5, "+27820000401"))
    incident_id, received = _incident(stack, device, token)
    await _check(work, received + timedelta(minutes=5, days=1, seconds=1))
    assert _escalations(stack, token, incident_id) == []
    await _check(work, received + timedelta(minutes=5, days=1))
    assert _levels(stack, token, incident_id, rule) == [1]


async def test_checks_running_at_the_same_time_fire_each_level_once(
    server: Server, admin: Api, work: WorkContext
) -> None:
    stack = server.stack
    region, device, token = _region(admin)
    rule = _rule(admin, region, "open", _level(5, "+27820000501", "+27820000502"), _level(10, "+27820000503"))
    incident_id, received = _incident(stack, device, token)
    at = received + timedelta(minutes=11)
    await asyncio.gather(*(_check(work, at) for _ in range(4)))
    assert _levels(stack, token, incident_id, rule) == [1, 2]
    assert [m["recipient"] for m in _messages(stack, incident_id)] == ["+27820000501", "+27820000502", "+27820000503"]


async def test_a_worker_runs_the_check_from_the_broker_and_acknowledging_stops_it(
    server: Server, admin: Api, work: WorkContext, critical_worker: Process
) -> None:
    stack = server.stack
    region, device, token = _region(admin)
    rule = _rule(admin, region, "open", _level(5, "+27820000601"), _level(10, "+27820000602"))
    acknowledged, received = _incident(stack, device, token)
    # A second incident, left open: a check whose effect on it shows the check ran to the end.
    witness, _ = _incident(stack, device, token)
    async with SseClient(stack.base_url, token, region) as sse:
        await work.tasks.kick(check_escalations, now=(received + timedelta(minutes=5)).isoformat())
        await wait_for(lambda: _levels(stack, token, acknowledged) == [1], what="level 1 on the timeline")
        (live,) = await wait_for(lambda: _escalated_live(sse, acknowledged), what="incident.updated (escalated)")
        assert live["change"]["payload"]["rule_id"] == rule["id"] and live["change"]["payload"]["level"] == 1
        # The worker sends it too (the console provider stands in for the gateway here).
        (sms,) = await wait_for(
            lambda: [m for m in _messages(stack, acknowledged) if m["status"] == "sent"], what="the SMS sent"
        )
        assert sms["recipient"] == "+27820000601" and sms["step"] == f"escalation:{rule['id']}:1"

        ok(act(stack, token, acknowledged, "acknowledge"))
        await work.tasks.kick(check_escalations, now=(received + timedelta(minutes=20)).isoformat())
        await wait_for(lambda: _levels(stack, token, witness) == [1, 2], what="the witness escalated twice")
        assert _levels(stack, token, acknowledged) == [1]
        assert [m["recipient"] for m in _messages(stack, acknowledged)] == ["+27820000601"]
