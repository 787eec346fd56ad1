"""Patrol vehicles against ``naboom serve`` on real PostgreSQL, Redis and Mosquitto.

Registration and tokens (shown once, rotated, deactivated), pings (stored, latest position,
broadcast to the region only, rate-limited, validated), region scoping, and the nearest
available vehicles.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from naboom.vehicles.service import nearest_available
from tests.integration.live import SseClient
from tests.support import Server, unique_region, wait_for

PROBLEM_JSON = "application/problem+json"
PING = "/panic/api/vehicle/ping"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _iso(delta: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def _assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    problem = r.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    return problem  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def admin(server: Server) -> str:
    return server.stack.admin()


@pytest.fixture
async def api(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.stack.base_url, timeout=30) as client:
        yield client


@pytest.fixture
async def sessions(server: Server) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the server's database, for calling the services the way the incidents code does."""
    assert server.stack.database_url is not None
    engine = create_async_engine(server.stack.database_url)
    try:
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()


async def _region(api: httpx.AsyncClient, admin: str) -> str:
    code = unique_region()
    r = await api.post("/api/regions", json={"code": code, "name": f"Region {code}"}, headers=_auth(admin))
    assert r.status_code == 201, r.text
    return code


async def _register(api: httpx.AsyncClient, admin: str, region: str) -> dict[str, Any]:
    callsign = f"Alpha-{uuid.uuid4().hex[:8]}"
    r = await api.post("/api/vehicles", json={"callsign": callsign, "region": region}, headers=_auth(admin))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def _ping(api: httpx.AsyncClient, token: str, **fields: Any) -> httpx.Response:
    body = {"lat": -24.53, "lng": 28.71, "speed": 12.5, "heading": 90.0, "ts": _iso()} | fields
    return await api.post(PING, json=body, headers=_auth(token))


# registration and tokens ---------------------------------------------------------------------


async def test_registration_shows_the_token_once_and_never_in_list_or_detail(
    server: Server, api: httpx.AsyncClient, admin: str
) -> None:
    region = await _region(api, admin)
    vehicle = await _register(api, admin, region)
    assert set(vehicle) == {"id", "callsign", "region", "token"}
    assert vehicle["region"] == region and len(vehicle["token"]) >= 43

    listed = await api.get("/api/vehicles", params={"region": region}, headers=_auth(admin))
    detail = await api.get(f"/api/vehicles/{vehicle['id']}", headers=_auth(admin))
    assert listed.status_code == 200 and detail.status_code == 200
    assert [v["id"] for v in listed.json()["items"]] == [vehicle["id"]]
    for r in (listed, detail):
        assert vehicle["token"] not in r.text
        assert "token" not in r.text  # neither the token nor its hash is ever shown
    assert detail.json()["callsign"] == vehicle["callsign"]
    assert detail.json()["active"] is True and detail.json()["last_ping_at"] is None


async def test_registration_refuses_client_chosen_id_token_or_hash_and_duplicate_callsigns(
    api: httpx.AsyncClient, admin: str
) -> None:
    region = await _region(api, admin)
    for extra in ({"id": str(uuid.uuid4())}, {"token": "mine"}, {"token_hash": "0" * 64}, {"active": False}):
        body = {"callsign": f"Bravo-{uuid.uuid4().hex[:8]}", "region": region} | extra
        problem = _assert_problem(await api.post("/api/vehicles", json=body, headers=_auth(admin)), 400)
        assert next(iter(extra)) in str(problem)
    vehicle = await _register(api, admin, region)
    again = await api.post(
        "/api/vehicles", json={"callsign": vehicle["callsign"], "region": region}, headers=_auth(admin)
    )
    _assert_problem(again, 409)
    unknown = await api.post(
        "/api/vehicles", json={"callsign": f"C-{uuid.uuid4().hex[:8]}", "region": unique_region()}, headers=_auth(admin)
    )
    assert "unknown region" in _assert_problem(unknown, 400)["detail"]


async def test_rotated_token_old_answers_401_and_new_is_accepted(api: httpx.AsyncClient, admin: str) -> None:
    region = await _region(api, admin)
    vehicle = await _register(api, admin, region)
    assert (await _ping(api, vehicle["token"])).status_code == 202

    r = await api.post(f"/api/vehicles/{vehicle['id']}/token", headers=_auth(admin))
    assert r.status_code == 201, r.text
    rotated = r.json()
    assert rotated["id"] == vehicle["id"] and rotated["token"] != vehicle["token"]

    assert "unknown vehicle token" in _assert_problem(await _ping(api, vehicle["token"]), 401)["detail"]
    assert (await _ping(api, rotated["token"])).status_code == 202


async def test_deactivated_vehicle_answers_401_until_reactivated(api: httpx.AsyncClient, admin: str) -> None:
    region = await _region(api, admin)
    vehicle = await _register(api, admin, region)

    r = await api.post(f"/api/vehicles/{vehicle['id']}/deactivate", headers=_auth(admin))
    assert r.status_code == 200 and r.json()["active"] is False
    assert "deactivated" in _assert_problem(await _ping(api, vehicle["token"]), 401)["detail"]

    r = await api.post(f"/api/vehicles/{vehicle['id']}/activate", headers=_auth(admin))
    assert r.status_code == 200 and r.json()["active"] is True
    assert (await _ping(api, vehicle["token"])).status_code == 202


async def test_every_admin_vehicle_action_is_audited(api: httpx.AsyncClient, admin: str) -> None:
    region = await _region(api, admin)
    vehicle = await _register(api, admin, region)
    for action in ("token", "deactivate", "activate"):
        assert (await api.post(f"/api/vehicles/{vehicle['id']}/{action}", headers=_auth(admin))).is_success

    r = await api.get("/api/audit", params={"target_type": "vehicle", "target_id": vehicle["id"]}, headers=_auth(admin))
    assert r.status_code == 200, r.text
    entries = r.json()["items"]
    assert [e["action"] for e in reversed(entries)] == [
        "vehicle.create",
        "vehicle.rotate_token",
        "vehicle.deactivate",
        "vehicle.activate",
    ]
    assert all(e["role"] == "admin" and e["ip"] for e in entries)
    assert vehicle["token"] not in r.text


# pings ---------------------------------------------------------------------------------------


async def test_ping_is_stored_becomes_the_latest_position_and_is_broadcast_to_its_region_only(
    server: Server, api: httpx.AsyncClient, admin: str
) -> None:
    stack = server.stack
    region, other = await _region(api, admin), await _region(api, admin)
    vehicle, other_vehicle = await _register(api, admin, region), await _register(api, admin, other)
    operator, other_operator = stack.operator(region), stack.operator(other)
    ts = datetime.now(UTC).replace(microsecond=0)

    async with (
        SseClient(stack.base_url, operator, region) as watcher,
        SseClient(stack.base_url, other_operator, other) as outsider,
    ):
        r = await _ping(api, vehicle["token"], lat=-24.6, lng=28.8, speed=13.9, heading=270, ts=ts.isoformat())
        assert r.status_code == 202 and r.json() == {"accepted": True}

        (event,) = await wait_for(lambda: watcher.incidents("vehicle.position"), what="vehicle.position")
        assert datetime.fromisoformat(event.pop("ts")) == ts and event.pop("event_id") > 0
        assert event == {
            "type": "vehicle.position",
            "id": vehicle["id"],
            "callsign": vehicle["callsign"],
            "region": region,
            "lat": -24.6,
            "lng": 28.8,
            "speed": 13.9,
            "heading": 270.0,
        }
        # A later event of the other region proves its stream is live and never carried ours.
        assert (await _ping(api, other_vehicle["token"])).status_code == 202
        seen = await wait_for(lambda: outsider.incidents("vehicle.position"), what="the other region's event")
        assert [e["id"] for e in seen] == [other_vehicle["id"]]
        assert [e["data"]["id"] for e in watcher.events] == [vehicle["id"]]

    # The other region's operator cannot open this region's feed either.
    async with SseClient(stack.base_url, other_operator, region) as refused:
        assert refused.status == 404

    detail = (await api.get(f"/api/vehicles/{vehicle['id']}", headers=_auth(operator))).json()
    assert (detail["lat"], detail["lng"], detail["speed"], detail["heading"]) == (-24.6, 28.8, 13.9, 270.0)
    assert datetime.fromisoformat(detail["last_ping_at"]) == ts
    assert 0 <= detail["age_seconds"] < 600
    listed = (await api.get("/api/vehicles", headers=_auth(operator))).json()
    assert [(v["id"], v["lat"]) for v in listed["items"]] == [(vehicle["id"], -24.6)]

    trail = (await api.get(f"/api/vehicles/{vehicle['id']}/trail", headers=_auth(operator))).json()
    assert trail["total"] == 1
    point = trail["items"][0]
    assert (point["lat"], point["lng"], point["speed"], point["heading"]) == (-24.6, 28.8, 13.9, 270.0)
    assert datetime.fromisoformat(point["ts"]) == ts and point["received_at"]


async def test_an_older_ping_joins_the_trail_but_does_not_move_the_latest_position(
    api: httpx.AsyncClient, admin: str
) -> None:
    region = await _region(api, admin)
    vehicle = await _register(api, admin, region)
    now = datetime.now(UTC).replace(microsecond=0)
    assert (await _ping(api, vehicle["token"], lat=-24.0, ts=now.isoformat())).status_code == 202
    late = now - timedelta(minutes=2)
    assert (await _ping(api, vehicle["token"], lat=-23.0, ts=late.isoformat())).status_code == 202

    detail = (await api.get(f"/api/vehicles/{vehicle['id']}", headers=_auth(admin))).json()
    assert detail["lat"] == -24.0 and datetime.fromisoformat(detail["last_ping_at"]) == now
    trail = (await api.get(f"/api/vehicles/{vehicle['id']}/trail", headers=_auth(admin))).json()
    assert [p["lat"] for p in trail["items"]] == [-23.0, -24.0]  # ordered by ts

    since = (await api.get(
        f"/api/vehicles/{vehicle['id']}/trail", params={"since": (now - timedelta(minutes=1)).isoformat()},
        headers=_auth(admin),
    )).json()
    assert [p["lat"] for p in since["items"]] == [-24.0]


async def test_ten_quick_pings_are_accepted_and_the_eleventh_answers_429_with_retry_after(
    api: httpx.AsyncClient, admin: str
) -> None:
    region = await _region(api, admin)
    vehicle, neighbour = await _register(api, admin, region), await _register(api, admin, region)
    started = time.monotonic()
    statuses = [(await _ping(api, vehicle["token"])).status_code for _ in range(10)]
    eleventh = await _ping(api, vehicle["token"])
    # 30 a minute refills one token every 2 s; the burst must be spent faster than that.
    assert time.monotonic() - started < 2, "the machine was too slow to spend the burst inside one refill"

    assert statuses == [202] * 10
    problem = _assert_problem(eleventh, 429)
    assert eleventh.headers["Retry-After"] in {"1", "2"}
    assert problem["retry_after"] == int(eleventh.headers["Retry-After"])
    # The bucket is the vehicle's own: another vehicle of the region still pings.
    assert (await _ping(api, neighbour["token"])).status_code == 202


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer not-a-vehicle-token", "Basic dXNlcjpwYXNz"],
    ids=["missing", "no-token", "unknown", "not-bearer"],
)
async def test_a_missing_or_unknown_vehicle_token_answers_401(api: httpx.AsyncClient, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    r = await api.post(PING, json={"lat": -24.5, "lng": 28.7, "ts": _iso()}, headers=headers)
    _assert_problem(r, 401)


async def test_an_operator_session_token_is_not_a_vehicle_token(server: Server, api: httpx.AsyncClient, admin: str) -> None:
    r = await api.post(PING, json={"lat": -24.5, "lng": 28.7, "ts": _iso()}, headers=_auth(admin))
    _assert_problem(r, 401)


@pytest.mark.parametrize(
    ("fields", "drop", "mentions"),
    [
        ({}, "lat", "lat"),
        ({}, "ts", "ts"),
        ({"lat": 123}, None, "$.lat"),
        ({"lng": -181}, None, "$.lng"),
        ({"heading": 400}, None, "$.heading"),
        ({"speed": -1}, None, "$.speed"),
        ({"speed": 250}, None, "$.speed"),
        ({"lat": "-24.5"}, None, "$.lat"),
        ({"ts": int(time.time())}, None, "$.ts"),
        ({"ts": "2025-06-01T08:30:00"}, None, "timezone"),
        ({"ts": "yesterday"}, None, "$.ts"),
        ({"vehicle_id": str(uuid.uuid4())}, None, "vehicle_id"),
    ],
    ids=[
        "missing-lat", "missing-ts", "lat-123", "lng-181", "heading-400", "negative-speed", "speed-250",
        "lat-as-string", "ts-unix-seconds", "ts-without-offset", "ts-not-a-time", "unknown-field",
    ],
)
async def test_a_ping_that_breaks_the_schema_answers_422_naming_the_field(
    api: httpx.AsyncClient, admin: str, fields: dict[str, Any], drop: str | None, mentions: str
) -> None:
    region = await _region(api, admin)
    vehicle = await _register(api, admin, region)
    body: dict[str, Any] = {"lat": -24.5, "lng": 28.7, "speed": 3.0, "heading": 10.0, "ts": _iso()} | fields
    body.pop(drop or "", None)
    r = await api.post(PING, json=body, headers=_auth(vehicle["token"]))
    assert mentions in _assert_problem(r, 422)["detail"]
    trail = (await api.get(f"/api/vehicles/{vehicle['id']}/trail", headers=_auth(admin))).json()
    assert trail["total"] == 0


@pytest.mark.parametrize(
    ("delta", "mentions"),
    [(timedelta(minutes=6), "ahead"), (timedelta(days=-1, minutes=-1), "old")],
    ids=["6-min-ahead", "a-day-old"],
)
async def test_a_ping_too_far_in_the_future_or_older_than_a_day_answers_422(
    api: httpx.AsyncClient, admin: str, delta: timedelta, mentions: str
) -> None:
    region = await _region(api, admin)
    vehicle = await _register(api, admin, region)
    r = await _ping(api, vehicle["token"], ts=_iso(delta))
    assert mentions in _assert_problem(r, 422)["detail"]


@pytest.mark.parametrize("body", [b"not json", b"{\"lat\": ", b""], ids=["text", "truncated", "empty"])
async def test_a_ping_body_that_is_not_json_answers_400_problem_details(
    api: httpx.AsyncClient, admin: str, body: bytes
) -> None:
    region = await _region(api, admin)
    vehicle = await _register(api, admin, region)
    headers = _auth(vehicle["token"]) | {"Content-Type": "application/json"}
    r = await api.post(PING, content=body, headers=headers)
    assert "not valid JSON" in _assert_problem(r, 400)["detail"]


# scoping and roles ---------------------------------------------------------------------------


async def test_an_operator_of_another_region_gets_404_on_detail_and_trail_and_no_list_entry(
    server: Server, api: httpx.AsyncClient, admin: str
) -> None:
    region, other = await _region(api, admin), await _region(api, admin)
    vehicle = await _register(api, admin, region)
    outsider = server.stack.operator(other)
    for path in (f"/api/vehicles/{vehicle['id']}", f"/api/vehicles/{vehicle['id']}/trail"):
        _assert_problem(await api.get(path, headers=_auth(outsider)), 404)
    listed = await api.get("/api/vehicles", headers=_auth(outsider))
    assert listed.status_code == 200 and vehicle["id"] not in listed.text
    by_region = await api.get("/api/vehicles", params={"region": region}, headers=_auth(outsider))
    assert by_region.json()["items"] == [] and by_region.json()["total"] == 0
    # Admin actions are refused for every operator, whatever the region.
    for action in ("token", "deactivate", "activate"):
        _assert_problem(await api.post(f"/api/vehicles/{vehicle['id']}/{action}", headers=_auth(outsider)), 403)


async def test_a_viewer_lists_the_regions_vehicles_but_cannot_register_one(
    server: Server, api: httpx.AsyncClient, admin: str
) -> None:
    region = await _region(api, admin)
    vehicle = await _register(api, admin, region)
    name = f"viewer-{uuid.uuid4().hex[:8]}"
    server.stack.create_user(name, "viewer", region)
    viewer = server.stack.login(name)

    listed = await api.get("/api/vehicles", headers=_auth(viewer))
    assert listed.status_code == 200 and [v["id"] for v in listed.json()["items"]] == [vehicle["id"]]
    assert (await api.get(f"/api/vehicles/{vehicle['id']}/trail", headers=_auth(viewer))).status_code == 200
    r = await api.post("/api/vehicles", json={"callsign": f"V-{uuid.uuid4().hex[:8]}", "region": region}, headers=_auth(viewer))
    _assert_problem(r, 403)


async def test_anonymous_callers_cannot_read_vehicles(api: httpx.AsyncClient) -> None:
    _assert_problem(await api.get("/api/vehicles"), 401)
    _assert_problem(await api.get(f"/api/vehicles/{uuid.uuid4()}"), 401)


# nearest available -----------------------------------------------------------------------------


async def test_nearest_available_lists_active_available_vehicles_of_the_region_by_distance(
    api: httpx.AsyncClient, admin: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    region = await _region(api, admin)
    far, near, middle, parked, retired = [await _register(api, admin, region) for _ in range(5)]
    for vehicle, lat in ((far, -24.30), (near, -24.50), (middle, -24.45), (retired, -24.51)):
        assert (await _ping(api, vehicle["token"], lat=lat, lng=28.70)).status_code == 202
    assert (await api.post(f"/api/vehicles/{retired['id']}/deactivate", headers=_auth(admin))).status_code == 200
    # ``parked`` never pinged: no position, so it cannot be suggested.

    async with sessions() as session:
        found = await nearest_available(session, region, -24.51, 28.70)
    assert [str(v.id) for v in found] == [near["id"], middle["id"], far["id"]]
    assert [v.distance_m for v in found] == sorted(v.distance_m for v in found)
    assert 1000 < found[0].distance_m < 1250  # 0.01 degrees of latitude is about 1.11 km
    assert parked["id"] not in {str(v.id) for v in found}
