"""The incident lifecycle against ``naboom serve`` on real PostgreSQL, Redis and Mosquitto.

``open → acknowledged → dispatched → resolved``, ``cancelled`` from any status not closed yet,
409 for everything else; the timeline and the ``incident.updated`` broadcasts that follow;
who may act; two operators at once; repeated SOS from one device attaching to its incident.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from naboom.db import models as m
from naboom.ingest.schemas import Envelope, Verdict
from naboom.ingest.service import IngestPolicy, IngestService
from naboom.ingest.signing import signed_payload
from tests.integration.incident_helpers import (
    ATTACH_WINDOW_SECONDS,
    act,
    add_vehicle,
    assert_problem,
    call,
    detail,
    new_incident,
    ok,
    serve,
    timeline,
    username,
    vehicle_available,
)
from tests.integration.live import SseClient
from tests.support import (
    Server,
    Stack,
    in_process_sessions,
    psql,
    publish,
    publisher,
    sos,
    unique_pid,
    unique_region,
    wait_for,
)


@pytest.fixture(scope="module")
def server(real_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The module's server, attaching repeated SOS for the default 30 minutes."""
    yield from serve(real_stack, tmp_path_factory.mktemp("lifecycle"), ATTACH_WINDOW_SECONDS)


@pytest.fixture(scope="module")
def stack(server: Server) -> Stack:
    return server.stack


@pytest.fixture(scope="module")
def admin(stack: Stack) -> str:
    return stack.admin()


def _updates(sse: SseClient) -> list[dict[str, Any]]:
    return sse.incidents("incident.updated")


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _bring_to(stack: Stack, token: str, incident_id: str, status: str, vehicle: dict[str, Any] | None) -> None:
    """Walk an open incident to ``status`` through the API."""
    steps = {
        "open": [],
        "acknowledged": [("acknowledge", None)],
        "dispatched": [("dispatch", {"vehicle_id": vehicle["id"] if vehicle else None})],
        "resolved": [("acknowledge", None), ("resolve", None)],
        "cancelled": [("cancel", None)],
    }[status]
    for action, body in steps:
        ok(act(stack, token, incident_id, action, body))


# The valid transitions --------------------------------------------------------------------------


async def test_acknowledge_records_who_and_how_long_adds_a_timeline_event_and_broadcasts_incident_updated(
    stack: Stack,
) -> None:
    region = unique_region()
    token = stack.operator(region)
    me = username(stack, token)
    async with SseClient(stack.base_url, token, region) as sse:
        _, device, incident_id = new_incident(stack, region)
        body = ok(act(stack, token, incident_id, "acknowledge", {"note": "Calling the farm"}))
        [event] = await wait_for(lambda: _updates(sse), what="incident.updated after acknowledge")

    assert body["id"] == incident_id and body["status"] == "acknowledged"
    assert body["acknowledged_by"] == me
    took = (_when(body["acknowledged_at"]) - _when(body["created_at"])).total_seconds()
    assert body["ack_seconds"] == pytest.approx(took, abs=0.01) and body["ack_seconds"] >= 0

    assert event["id"] == incident_id and event["region"] == region and event["status"] == "acknowledged"
    assert {"id", "msg", "lat", "lng", "ts", "acc", "created_at", "sos_count", "acknowledged_by"} <= event.keys()
    assert event["acknowledged_by"] == me and event["ack_seconds"] == body["ack_seconds"]
    assert event["change"]["type"] == "acknowledged" and event["change"]["actor"] == me
    assert event["change"]["payload"]["note"] == "Calling the farm"

    shown = detail(stack, token, incident_id)
    assert [(e["type"], e["actor"]) for e in shown["timeline"]] == [("sos", f"device:{device['pid']}"), ("acknowledged", me)]
    assert shown["acknowledged_by"] == me and shown["ack_seconds"] == body["ack_seconds"]


async def test_acknowledge_dispatch_resolve_walks_the_lifecycle_broadcasting_each_step_and_frees_the_vehicle(
    stack: Stack,
) -> None:
    region = unique_region()
    token = stack.operator(region)
    me = username(stack, token)
    vehicle = add_vehicle(stack, region, lat=-24.5, lng=28.7)
    async with SseClient(stack.base_url, token, region) as sse:
        _, device, incident_id = new_incident(stack, region)
        acknowledged = ok(act(stack, token, incident_id, "acknowledge"))
        dispatched = ok(act(stack, token, incident_id, "dispatch", {"vehicle_id": vehicle["id"], "note": "Go"}))
        assert not vehicle_available(stack, vehicle), "a dispatched vehicle is busy"
        resolved = ok(act(stack, token, incident_id, "resolve", {"note": "All safe"}))
        events = await wait_for(lambda: len(_updates(sse)) == 3 and _updates(sse), what="three incident.updated")

    assert vehicle_available(stack, vehicle), "resolving frees the vehicle"
    assert [acknowledged["status"], dispatched["status"], resolved["status"]] == ["acknowledged", "dispatched", "resolved"]
    assert dispatched["vehicle_id"] == vehicle["id"] and dispatched["dispatched_at"] is not None
    assert resolved["closed_by"] == me and resolved["closed_at"] is not None
    assert resolved["acknowledged_by"] == me, "closing keeps the acknowledgement"
    assert [(e["status"], e["change"]["type"], e["change"]["actor"]) for e in events] == [
        ("acknowledged", "acknowledged", me),
        ("dispatched", "dispatched", me),
        ("resolved", "resolved", me),
    ]
    assert events[1]["vehicle_id"] == vehicle["id"] and events[1]["change"]["payload"]["callsign"] == vehicle["callsign"]

    shown = detail(stack, token, incident_id)
    assert [(e["type"], e["actor"]) for e in shown["timeline"]] == [
        ("sos", f"device:{device['pid']}"), ("acknowledged", me), ("dispatched", me), ("resolved", me),
    ]
    dispatch_event, resolve_event = shown["timeline"][2], shown["timeline"][3]
    assert dispatch_event["payload"] == {"vehicle_id": vehicle["id"], "callsign": vehicle["callsign"], "note": "Go"}
    assert resolve_event["payload"] == {"vehicle_id": vehicle["id"], "callsign": vehicle["callsign"], "note": "All safe"}
    assert shown["vehicle_callsign"] == vehicle["callsign"]


async def test_dispatch_straight_from_open_acknowledges_implicitly_and_records_the_acknowledgement(
    stack: Stack,
) -> None:
    region = unique_region()
    token = stack.operator(region)
    me = username(stack, token)
    vehicle = add_vehicle(stack, region)
    async with SseClient(stack.base_url, token, region) as sse:
        _, _, incident_id = new_incident(stack, region)
        body = ok(act(stack, token, incident_id, "dispatch", {"vehicle_id": vehicle["id"]}))
        [event] = await wait_for(lambda: _updates(sse), what="one incident.updated for the dispatch")

    assert body["status"] == "dispatched" and body["vehicle_id"] == vehicle["id"]
    assert body["acknowledged_by"] == me and body["ack_seconds"] is not None
    assert body["acknowledged_at"] == body["dispatched_at"]
    assert event["status"] == "dispatched" and event["change"]["type"] == "dispatched"
    entries = detail(stack, token, incident_id)["timeline"]
    assert [(e["type"], e["actor"]) for e in entries][1:] == [("acknowledged", me), ("dispatched", me)]
    assert entries[1]["payload"]["implicit"] is True


async def test_dispatch_of_a_dispatched_incident_reassigns_and_frees_the_first_vehicle(stack: Stack) -> None:
    region = unique_region()
    token = stack.operator(region)
    first, second = add_vehicle(stack, region), add_vehicle(stack, region)
    _, _, incident_id = new_incident(stack, region)
    ok(act(stack, token, incident_id, "dispatch", {"vehicle_id": first["id"]}))

    body = ok(act(stack, token, incident_id, "dispatch", {"vehicle_id": second["id"], "note": "Alpha broke down"}))

    assert body["status"] == "dispatched" and body["vehicle_id"] == second["id"]
    assert vehicle_available(stack, first) and not vehicle_available(stack, second)
    last = detail(stack, token, incident_id)["timeline"][-1]
    assert last["type"] == "dispatched"
    assert last["payload"]["previous_vehicle_id"] == first["id"] and last["payload"]["callsign"] == second["callsign"]


@pytest.mark.parametrize("status", ["open", "acknowledged", "dispatched"])
async def test_cancel_closes_an_incident_from_each_status_not_closed_yet_and_frees_its_vehicle(
    stack: Stack, status: str
) -> None:
    region = unique_region()
    token = stack.operator(region)
    me = username(stack, token)
    vehicle = add_vehicle(stack, region)
    _, _, incident_id = new_incident(stack, region)
    _bring_to(stack, token, incident_id, status, vehicle)
    async with SseClient(stack.base_url, token, region) as sse:
        body = ok(act(stack, token, incident_id, "cancel", {"note": "False alarm: child pressed it"}))
        [event] = await wait_for(lambda: _updates(sse), what="incident.updated for the cancel")

    assert body["status"] == "cancelled" and body["closed_by"] == me
    assert event["status"] == "cancelled" and event["change"]["type"] == "cancelled"
    assert vehicle_available(stack, vehicle)
    last = detail(stack, token, incident_id)["timeline"][-1]
    assert (last["type"], last["actor"], last["payload"]["note"]) == ("cancelled", me, "False alarm: child pressed it")


async def test_notes_go_on_the_timeline_with_their_author_in_any_status_and_are_broadcast(stack: Stack) -> None:
    region = unique_region()
    token = stack.operator(region)
    me = username(stack, token)
    _, _, incident_id = new_incident(stack, region)
    async with SseClient(stack.base_url, token, region) as sse:
        entry = ok(act(stack, token, incident_id, "notes", {"text": "Neighbour on the way"}), 201)
        _bring_to(stack, token, incident_id, "resolved", None)
        after = ok(act(stack, token, incident_id, "notes", {"text": "Report filed with SAPS"}), 201)
        notes = await wait_for(
            lambda: [e for e in _updates(sse) if e["change"]["type"] == "note"] if len(_updates(sse)) == 4 else None,
            what="the broadcasts of two notes and two transitions",
        )

    assert (entry["type"], entry["actor"], entry["payload"]) == ("note", me, {"text": "Neighbour on the way"})
    assert isinstance(entry["id"], int) and after["id"] > entry["id"]
    assert [n["change"]["payload"]["text"] for n in notes] == ["Neighbour on the way", "Report filed with SAPS"]
    assert [n["status"] for n in notes] == ["open", "resolved"]
    types = [t for t, _ in timeline(stack, token, incident_id)]
    assert types == ["sos", "note", "acknowledged", "resolved", "note"]
    assert_problem(act(stack, token, incident_id, "notes", {"text": "   "}), 400)
    assert_problem(act(stack, token, incident_id, "notes", {}), 400)


# The invalid ones -------------------------------------------------------------------------------

INVALID = [
    ("acknowledged", "acknowledge"),
    ("dispatched", "acknowledge"),
    ("resolved", "acknowledge"),
    ("cancelled", "acknowledge"),
    ("open", "resolve"),
    ("resolved", "resolve"),
    ("cancelled", "resolve"),
    ("resolved", "cancel"),
    ("cancelled", "cancel"),
    ("resolved", "dispatch"),
    ("cancelled", "dispatch"),
]


@pytest.mark.parametrize(("status", "action"), INVALID, ids=[f"{a}-when-{s}" for s, a in INVALID])
def test_an_invalid_transition_answers_409_naming_the_current_status_and_changes_nothing(
    stack: Stack, status: str, action: str
) -> None:
    region = unique_region()
    token = stack.operator(region)
    busy, spare = add_vehicle(stack, region), add_vehicle(stack, region)
    _, _, incident_id = new_incident(stack, region)
    _bring_to(stack, token, incident_id, status, busy)
    before = detail(stack, token, incident_id)

    body = {"vehicle_id": spare["id"]} if action == "dispatch" else None
    problem = assert_problem(act(stack, token, incident_id, action, body), 409)

    assert f"it is {status}" in problem["detail"] and problem["current_status"] == status
    assert detail(stack, token, incident_id) == before
    assert vehicle_available(stack, spare)


def test_dispatching_the_vehicle_already_assigned_again_answers_409(stack: Stack) -> None:
    region = unique_region()
    token = stack.operator(region)
    vehicle = add_vehicle(stack, region)
    _, _, incident_id = new_incident(stack, region)
    ok(act(stack, token, incident_id, "dispatch", {"vehicle_id": vehicle["id"]}))

    problem = assert_problem(act(stack, token, incident_id, "dispatch", {"vehicle_id": vehicle["id"]}), 409)
    assert "already dispatched" in problem["detail"]
    assert [t for t, _ in timeline(stack, token, incident_id)] == ["sos", "acknowledged", "dispatched"]


def test_dispatch_refuses_a_busy_deactivated_foreign_or_unknown_vehicle_and_leaves_the_incident_open(
    stack: Stack,
) -> None:
    region = unique_region()
    token = stack.operator(region)
    _, _, incident_id = new_incident(stack, region)
    busy = add_vehicle(stack, region, available=False)
    retired = add_vehicle(stack, region, active=False)
    foreign = add_vehicle(stack, new_incident(stack)[0])

    assert "not available" in assert_problem(act(stack, token, incident_id, "dispatch", {"vehicle_id": busy["id"]}), 409)["detail"]
    assert "deactivated" in assert_problem(act(stack, token, incident_id, "dispatch", {"vehicle_id": retired["id"]}), 409)["detail"]
    for vehicle_id in (foreign["id"], str(uuid.uuid4())):
        problem = assert_problem(act(stack, token, incident_id, "dispatch", {"vehicle_id": vehicle_id}), 400)
        assert f"no vehicle {vehicle_id} in region {region}" in problem["detail"]
    assert_problem(act(stack, token, incident_id, "dispatch", {}), 400)

    shown = detail(stack, token, incident_id)
    assert shown["status"] == "open" and shown["acknowledged_by"] is None and len(shown["timeline"]) == 1
    assert vehicle_available(stack, foreign) and not vehicle_available(stack, busy)


# Who may act ------------------------------------------------------------------------------------


def test_a_viewer_of_the_region_reads_the_incident_but_gets_403_for_every_action(stack: Stack) -> None:
    region = unique_region()
    name = f"viewer-{uuid.uuid4().hex[:8]}"
    stack.create_user(name, "viewer", region)
    viewer = stack.login(name)
    vehicle = add_vehicle(stack, region)
    _, _, incident_id = new_incident(stack, region)

    assert detail(stack, viewer, incident_id)["id"] == incident_id
    for action, body in [
        ("acknowledge", None), ("dispatch", {"vehicle_id": vehicle["id"]}), ("resolve", None), ("cancel", None),
        ("notes", {"text": "I only watch"}),
    ]:
        assert_problem(act(stack, viewer, incident_id, action, body), 403)
    shown = detail(stack, viewer, incident_id)
    assert shown["status"] == "open" and len(shown["timeline"]) == 1 and vehicle_available(stack, vehicle)


def test_an_operator_of_another_region_gets_404_on_the_detail_and_every_action_and_does_not_list_it(
    stack: Stack, admin: str
) -> None:
    region = unique_region()
    outsider = stack.operator(unique_region())
    _, _, incident_id = new_incident(stack, region)
    vehicle = add_vehicle(stack, region)

    assert_problem(call(stack, outsider, "GET", f"/api/incidents/{incident_id}"), 404)
    for action, body in [
        ("acknowledge", None), ("dispatch", {"vehicle_id": vehicle["id"]}), ("resolve", None), ("cancel", None),
        ("notes", {"text": "not mine"}),
    ]:
        assert_problem(act(stack, outsider, incident_id, action, body), 404)
    assert ok(call(stack, outsider, "GET", "/api/incidents", region=region))["items"] == []
    assert detail(stack, admin, incident_id)["status"] == "open" and vehicle_available(stack, vehicle)
    # Admins act in every region.
    assert ok(act(stack, admin, incident_id, "acknowledge"))["acknowledged_by"] == username(stack, admin)


def test_every_action_is_in_the_audit_log_with_its_actor(stack: Stack, admin: str) -> None:
    region = unique_region()
    token = stack.operator(region)
    me = username(stack, token)
    vehicle = add_vehicle(stack, region)
    _, _, incident_id = new_incident(stack, region)
    ok(act(stack, token, incident_id, "acknowledge", {"note": "seen"}))
    ok(act(stack, token, incident_id, "notes", {"text": "calling"}), 201)
    ok(act(stack, token, incident_id, "dispatch", {"vehicle_id": vehicle["id"]}))
    ok(act(stack, token, incident_id, "resolve"))
    _, _, other_id = new_incident(stack, region)
    ok(act(stack, token, other_id, "cancel"))

    entries = [
        e for target in (incident_id, other_id)
        for e in ok(call(stack, admin, "GET", "/api/audit", target_id=target, limit=50))["items"]
    ]
    assert sorted(e["action"] for e in entries) == sorted(
        ["incident.acknowledge", "incident.note", "incident.dispatch", "incident.resolve", "incident.cancel"]
    )
    assert {(e["actor"], e["target_type"]) for e in entries} == {(me, "incident")}


async def test_two_operators_acknowledging_at_once_one_wins_and_the_other_gets_409(stack: Stack) -> None:
    region = unique_region()
    tokens = [stack.operator(region), stack.operator(region)]
    names = [username(stack, t) for t in tokens]
    device = stack.create_device(unique_pid(), region)

    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
        for _ in range(5):
            r = stack.submit(sos(device))
            assert r.status_code == 201, r.text
            incident_id = r.json()["incident_id"]
            answers = await asyncio.gather(*(
                client.post(f"/api/incidents/{incident_id}/acknowledge", headers={"Authorization": f"Bearer {t}"})
                for t in tokens
            ))
            assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
            winner = names[[a.status_code for a in answers].index(200)]
            loser = next(a for a in answers if a.status_code == 409)
            assert loser.json()["current_status"] == "acknowledged"
            shown = detail(stack, tokens[0], incident_id)
            assert shown["acknowledged_by"] == winner
            assert [e for e in timeline(stack, tokens[0], incident_id) if e[0] == "acknowledged"] == [("acknowledged", winner)]
            ok(act(stack, tokens[0], incident_id, "resolve"))  # so the next SOS opens a new incident


# Repeated SOS -----------------------------------------------------------------------------------


async def test_repeated_sos_within_the_window_attach_to_one_incident_with_sos_events_count_and_latest_location(
    stack: Stack,
) -> None:
    region = unique_region()
    token = stack.operator(region)
    device = stack.create_device(unique_pid(), region)
    points = [(-24.50, 28.70, 30.0), (-24.51, 28.71, 20.0), (-24.52, 28.72, 8.0)]
    async with SseClient(stack.base_url, token, region) as sse:
        answers = [stack.submit(sos(device, msg=f"SOS {n}", lat=lat, lng=lng, acc=acc)) for n, (lat, lng, acc) in enumerate(points)]
        # The fourth says nothing about where it is: the last known location stays.
        unlocated = {"pid": device["pid"], "ts": int(datetime.now(UTC).timestamp()), "nonce": uuid.uuid4().hex,
                     "msg": "Still here", "kid": device["kid"]}
        answers.append(stack.submit(signed_payload(unlocated, device["secret"])))
        updates = await wait_for(lambda: len(_updates(sse)) == 3 and _updates(sse), what="three incident.updated")

    assert [a.status_code for a in answers] == [201] * 4
    ids = {a.json()["incident_id"] for a in answers}
    assert len(ids) == 1
    incident_id = ids.pop()
    [created] = sse.incidents("incident.created")
    assert created["id"] == incident_id and created["sos_count"] == 1
    assert [(u["id"], u["sos_count"], u["change"]["type"]) for u in updates] == [
        (incident_id, 2, "sos"), (incident_id, 3, "sos"), (incident_id, 4, "sos"),
    ]
    assert [(u["lat"], u["lng"], u["acc"]) for u in updates] == [points[1], points[2], points[2]]

    shown = detail(stack, token, incident_id)
    assert shown["sos_count"] == 4 and shown["status"] == "open"
    assert (shown["lat"], shown["lng"], shown["acc"]) == points[2]
    assert shown["msg"] == "SOS 0", "the incident keeps its first message"
    assert _when(shown["last_sos_at"]) > _when(shown["created_at"])
    sos_events = [e for e in shown["timeline"] if e["type"] == "sos"]
    assert len(sos_events) == 4 and {e["actor"] for e in sos_events} == {f"device:{device['pid']}"}
    assert [(e["payload"]["lat"], e["payload"]["msg"]) for e in sos_events] == [
        (-24.50, "SOS 0"), (-24.51, "SOS 1"), (-24.52, "SOS 2"), (None, "Still here"),
    ]
    listed = ok(call(stack, token, "GET", "/api/incidents", device=device["pid"]))
    assert listed["total"] == 1
    assert stack.database_url is not None
    assert psql(stack.database_url, f"SELECT last_message FROM device WHERE pid = '{device['pid']}'") == "Still here"


async def test_repeated_sos_over_mqtt_attach_to_one_incident_and_each_broadcast_carries_the_count_so_far(
    stack: Stack,
) -> None:
    region = unique_region()
    token = stack.operator(region)
    device = stack.create_device(unique_pid(), region)
    async with SseClient(stack.base_url, token, region) as sse:
        with publisher(*stack.mqtt_address) as client:
            for n in range(5):
                publish(client, f"panic/ingest/{device['pid']}", sos(device, lat=-24.0 - n / 100))
        await wait_for(
            lambda: any(e["data"]["sos_count"] == 5 for e in sse.events), what="an event with all five SOS counted"
        )

    # The ingest batches as messages arrive: a batch opens and attaches at once, a later one attaches.
    [created] = sse.incidents("incident.created")
    updates = _updates(sse)
    counts = [created["sos_count"], *(u["sos_count"] for u in updates)]
    assert {e["id"] for e in [created, *updates]} == {created["id"]}
    assert counts == sorted(set(counts)) and counts[-1] == 5, counts
    assert all(u["change"]["type"] == "sos" for u in updates)
    shown = detail(stack, token, created["id"])
    assert shown["sos_count"] == 5 and shown["lat"] == -24.04
    assert [e["type"] for e in shown["timeline"]] == ["sos"] * 5


@pytest.mark.parametrize("status", ["acknowledged", "dispatched"])
def test_repeated_sos_attach_to_an_acknowledged_or_dispatched_incident_without_changing_its_status(
    stack: Stack, status: str
) -> None:
    region = unique_region()
    token = stack.operator(region)
    _, device, incident_id = new_incident(stack, region)
    _bring_to(stack, token, incident_id, status, add_vehicle(stack, region))

    again = stack.submit(sos(device, lat=-25.0, lng=29.0))

    assert again.status_code == 201 and again.json()["incident_id"] == incident_id
    shown = detail(stack, token, incident_id)
    assert shown["status"] == status and shown["sos_count"] == 2 and (shown["lat"], shown["lng"]) == (-25.0, 29.0)


def test_an_sos_whose_previous_one_is_older_than_the_window_opens_a_new_incident(stack: Stack) -> None:
    region = unique_region()
    token = stack.operator(region)
    _, device, first = new_incident(stack, region)
    assert stack.database_url is not None
    psql(stack.database_url, "UPDATE incident SET received_at = received_at - interval '1 hour', "
                             f"last_sos_at = now() - interval '{ATTACH_WINDOW_SECONDS + 1} seconds' WHERE id = '{first}'")

    again = stack.submit(sos(device))

    assert again.status_code == 201 and again.json()["incident_id"] != first
    assert detail(stack, token, first)["sos_count"] == 1
    assert detail(stack, token, again.json()["incident_id"])["sos_count"] == 1


@pytest.mark.parametrize("close", ["resolved", "cancelled"])
def test_an_sos_after_the_incident_was_closed_opens_a_new_incident(stack: Stack, close: str) -> None:
    region = unique_region()
    token = stack.operator(region)
    _, device, first = new_incident(stack, region)
    _bring_to(stack, token, first, close, None)

    again = stack.submit(sos(device))

    assert again.status_code == 201 and again.json()["incident_id"] != first
    assert detail(stack, token, first)["sos_count"] == 1


def test_a_duplicate_of_an_attached_sos_answers_200_with_the_incident_it_attached_to(stack: Stack) -> None:
    region = unique_region()
    token = stack.operator(region)
    _, device, incident_id = new_incident(stack, region)
    second = sos(device)
    assert stack.submit(second).json()["incident_id"] == incident_id

    duplicate = stack.submit(second)

    assert duplicate.status_code == 200 and duplicate.json()["incident_id"] == incident_id
    assert detail(stack, token, incident_id)["sos_count"] == 2


# The batch path (several SOS of one device in one transaction) ----------------------------------


@pytest.fixture
async def sessions(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """In-process sessions that encrypt and decrypt device secrets with the stack's key, like its server."""
    for key, value in stack.env().items():
        if key.startswith("NABOOM_"):
            monkeypatch.setenv(key, value)  # so the environment is restored afterwards
    async with in_process_sessions(stack) as maker:
        yield maker


def _envelopes(*payloads: dict[str, Any]) -> list[Envelope]:
    now = datetime.now(UTC)
    return [
        Envelope(body=json.dumps(p).encode(), transport="mqtt", topic=f"panic/ingest/{p['pid']}", received_at=now)
        for p in payloads
    ]


POLICY = IngestPolicy(
    dedup_window=timedelta(days=7), future_skew=timedelta(minutes=5), rejection_log_max_rows=10_000,
    sos_attach_window=timedelta(seconds=ATTACH_WINDOW_SECONDS),
)


async def test_several_sos_of_one_device_in_one_batch_open_one_incident_and_attach_the_rest(
    sessions: async_sessionmaker[AsyncSession], stack: Stack
) -> None:
    device = stack.create_device(unique_pid(), unique_region())
    other = stack.create_device(unique_pid(), unique_region())
    batch = [sos(device, lat=-24.1), sos(other), sos(device, lat=-24.2), sos(device, lat=-24.3)]

    async with sessions() as session:
        outcomes, stored = await IngestService(POLICY).process(session, _envelopes(*batch))
        await session.commit()

    assert [o.verdict for o in outcomes] == [Verdict.ACCEPTED] * 4
    mine = {o.incident_id for i, o in enumerate(outcomes) if i != 1}
    assert len(mine) == 1 and outcomes[1].incident_id not in mine
    incident_id = mine.pop()
    assert sorted((i.device, i.sos_count) for i in stored.created) == sorted([(device["pid"], 3), (other["pid"], 1)])
    assert stored.updated == []
    [new] = [i for i in stored.created if i.id == incident_id]
    assert new.lat == -24.3 and new.status == "open"
    async with sessions() as session:
        events = list(await session.scalars(
            select(m.IncidentEvent.type).where(m.IncidentEvent.incident_id == incident_id)
        ))
        receipts = set(await session.scalars(
            select(m.SosReceipt.incident_id).where(m.SosReceipt.key.in_([f"{device['pid']}:{p['nonce']}" for p in batch if p['pid'] == device['pid']]))
        ))
    assert events == ["sos", "sos", "sos"] and receipts == {incident_id}

    # A later batch attaches to it and reports it as updated, in its state at commit.
    async with sessions() as session:
        outcomes, stored = await IngestService(POLICY).process(session, _envelopes(sos(device, lat=-24.4), sos(device)))
        await session.commit()
    assert {o.incident_id for o in outcomes} == {incident_id} and stored.created == []
    [(updated, change)] = stored.updated
    assert (updated.id, updated.sos_count, updated.lat) == (incident_id, 5, -24.53)  # the last SOS's location
    assert change.type == "sos" and change.actor == f"device:{device['pid']}"


async def test_a_batch_led_by_a_duplicate_opens_the_new_incident_with_the_next_message_and_its_receipts_say_so(
    sessions: async_sessionmaker[AsyncSession], stack: Stack
) -> None:
    """The duplicate was meant to open the incident the rest attach to; it does not, the next message does."""
    region = unique_region()
    token = stack.operator(region)
    _, device, closed = new_incident(stack, region)
    first = sos(device)
    assert stack.submit(first).json()["incident_id"] == closed
    ok(act(stack, token, closed, "cancel"))
    batch = [first, sos(device), sos(device)]

    async with sessions() as session:
        outcomes, stored = await IngestService(POLICY).process(session, _envelopes(*batch))
        await session.commit()

    assert [o.verdict for o in outcomes] == [Verdict.DUPLICATE, Verdict.ACCEPTED, Verdict.ACCEPTED]
    assert str(outcomes[0].incident_id) == closed
    opened = outcomes[1].incident_id
    assert str(opened) != closed and outcomes[2].incident_id == opened
    assert [(i.id, i.sos_count) for i in stored.created] == [(opened, 2)]
    for payload in batch[1:]:
        again = stack.submit(payload)
        assert again.status_code == 200 and again.json()["incident_id"] == str(opened)
    assert detail(stack, token, str(opened))["sos_count"] == 2


async def test_with_the_attach_window_at_zero_every_sos_opens_its_own_incident(
    sessions: async_sessionmaker[AsyncSession], stack: Stack
) -> None:
    device = stack.create_device(unique_pid(), unique_region())
    off = IngestPolicy(dedup_window=timedelta(days=7), future_skew=timedelta(minutes=5), rejection_log_max_rows=10_000,
                       sos_attach_window=timedelta(0))

    async with sessions() as session:
        outcomes, stored = await IngestService(off).process(session, _envelopes(sos(device), sos(device)))
        await session.commit()
    async with sessions() as session:
        later, _ = await IngestService(off).process(session, _envelopes(sos(device)))
        await session.commit()

    ids = [o.incident_id for o in [*outcomes, *later]]
    assert len(set(ids)) == 3 and [i.sos_count for i in stored.created] == [1, 1]

