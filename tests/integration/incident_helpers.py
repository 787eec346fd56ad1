"""Helpers for the incident tests: a server with a known SOS attach window, incidents, vehicles, calls."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support import Server, Stack, psql, sos, unique_pid, unique_region

PROBLEM_JSON = "application/problem+json"
ATTACH_WINDOW_SECONDS = 1800


def serve(stack: Stack, logs: Path, attach_window: int = ATTACH_WINDOW_SECONDS) -> Iterator[Server]:
    """``naboom serve`` on ``stack`` with ``NABOOM_SOS_ATTACH_WINDOW_SECONDS`` set, whatever the default."""
    configured = dataclasses.replace(
        stack, extra={**stack.extra, "NABOOM_SOS_ATTACH_WINDOW_SECONDS": str(attach_window)}
    )
    srv = Server(configured, logs / "serve.log")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def call(stack: Stack, token: str, method: str, path: str, json: Any = None, **params: Any) -> httpx.Response:
    """One authenticated request."""
    return httpx.request(
        method, f"{stack.base_url}{path}", json=json, params=params or None,
        headers={"Authorization": f"Bearer {token}"}, timeout=30,
    )


def ok(r: httpx.Response, status: int = 200) -> Any:
    """The JSON body of an answer that has ``status``."""
    assert r.status_code == status, f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}"
    return r.json()


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    """An RFC 9457 problem with ``status``; returns its body."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    assert r.headers["content-type"].startswith(PROBLEM_JSON), r.headers["content-type"]
    problem = r.json()
    assert problem["status"] == status and problem["title"] and problem["detail"], problem
    return problem  # type: ignore[no-any-return]


def username(stack: Stack, token: str) -> str:
    """Who a token belongs to."""
    return str(ok(call(stack, token, "GET", "/api/auth/me"))["username"])


def new_incident(stack: Stack, region: str | None = None, **fields: Any) -> tuple[str, dict[str, Any], str]:
    """A new device of ``region`` (a new region if none) and the incident its first SOS opened."""
    region = region or unique_region()
    device = stack.create_device(unique_pid(), region)
    r = stack.submit(sos(device, **fields))
    assert r.status_code == 201, r.text
    return region, device, str(r.json()["incident_id"])


def detail(stack: Stack, token: str, incident_id: str) -> dict[str, Any]:
    """``GET /api/incidents/{id}``."""
    return dict(ok(call(stack, token, "GET", f"/api/incidents/{incident_id}")))


def timeline(stack: Stack, token: str, incident_id: str) -> list[tuple[str, str]]:
    """``(type, actor)`` of every timeline event, oldest first."""
    return [(e["type"], e["actor"]) for e in detail(stack, token, incident_id)["timeline"]]


def act(stack: Stack, token: str, incident_id: str, action: str, body: Any = None) -> httpx.Response:
    """``POST /api/incidents/{id}/{action}``."""
    return call(stack, token, "POST", f"/api/incidents/{incident_id}/{action}", body)


def add_vehicle(
    stack: Stack,
    region: str,
    *,
    lat: float | None = None,
    lng: float | None = None,
    active: bool = True,
    available: bool = True,
) -> dict[str, Any]:
    """A patrol vehicle stored straight in the database (the incidents tests do not depend on the vehicle API)."""
    assert stack.database_url is not None
    vehicle_id, callsign = uuid.uuid4(), f"T-{uuid.uuid4().hex[:8]}"
    token_hash = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    position = f"{lat}, {lng}, now()" if lat is not None and lng is not None else "NULL, NULL, NULL"
    psql(
        stack.database_url,
        "INSERT INTO vehicle (id, callsign, region, token_hash, active, available, last_lat, last_lng, "
        f"last_ping_at, created_at, updated_at) VALUES ('{vehicle_id}', '{callsign}', '{region}', '{token_hash}', "
        f"{active}, {available}, {position}, now(), now())",
    )
    return {"id": str(vehicle_id), "callsign": callsign, "region": region}


def vehicle_available(stack: Stack, vehicle: dict[str, Any]) -> bool:
    """The vehicle's ``available`` flag as stored."""
    assert stack.database_url is not None
    return psql(stack.database_url, f"SELECT available FROM vehicle WHERE id = '{vehicle['id']}'") == "t"
