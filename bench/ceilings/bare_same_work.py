#!/usr/bin/env python
"""The API's second ceiling: a bare ASGI app doing the same database work per request as naboom.

No framework, no ORM: asyncpg (its prepared-statement cache) and msgspec, under the same uvicorn
options as ``bare_asgi.py`` and ``naboom serve``. Each request does what naboom's answer needs,
and nothing else:

* ``GET /api/incidents``: verify the Bearer token (HS256, PyJWT, the run's
  ``NABOOM_SECRET_KEY``), read the same session-and-user row the auth middleware reads (refused
  when ended, expired or the user disabled), then on the same connection the same count and
  the same default page (50 newest of the user's regions) naboom runs, encoded with msgspec
  into naboom's JSON (``bench/api.py`` checks the body equals naboom's). No explicit transaction:
  at READ COMMITTED it would give the two queries no more consistency than they have here.
* ``POST /panic/api/vehicle/ping``: decode the body strictly (the same schema rules), look the
  vehicle up by its token's SHA-256, check the ts bounds, then in one transaction the same
  INSERT into the trail and the same conditional UPDATE of the latest position; ``202``.

What it leaves out, so the ratio charges these to naboom: the ping's two Redis round trips (the
rate bucket and the live-feed publish), request ids, the host check, CORS, and the log lines.

    NABOOM_DATABASE_URL=postgresql://... NABOOM_SECRET_KEY=... \\
        .venv/bin/python bench/ceilings/bare_same_work.py --port 8002
"""

from __future__ import annotations

import argparse
import hashlib
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
import jwt
import msgspec

# The pool naboom's engine has: 10 connections, 10 more on overflow.
POOL_MIN, POOL_MAX = 10, 20
PAGE = 50
FUTURE_SKEW = timedelta(seconds=int(os.environ.get("NABOOM_FUTURE_SKEW_SECONDS", "300")))
MAX_PING_AGE = timedelta(days=1)

SESSION_SQL = (
    "SELECT auth_session.revoked_at, auth_session.expires_at, auth_session.csrf_hash, operator.username, "
    "operator.role, operator.regions, operator.active FROM auth_session JOIN operator "
    "ON operator.id = auth_session.operator_id WHERE auth_session.id = $1::UUID AND operator.id = $2::UUID"
)


def _in(n: int) -> str:
    """``incident.region IN ($1, ..., $n)``: SQLAlchemy's expanding IN, as naboom sends it."""
    return "incident.region IN (" + ", ".join(f"${i}::VARCHAR" for i in range(1, n + 1)) + ")"


def count_sql(n: int) -> str:
    """naboom's count of the caller's ``n`` regions."""
    return f"SELECT count(*) AS count_1 FROM incident WHERE {_in(n)}"


def page_sql(n: int) -> str:
    """naboom's default page (newest first, ties by id) of the caller's ``n`` regions."""
    return (
        "SELECT incident.id, incident.region, incident.status, incident.source, incident.device_pid, "
        "incident.message, incident.lat, incident.lng, incident.accuracy, incident.device_ts, incident.received_at, "
        "incident.sos_count, incident.last_sos_at, incident.acknowledged_at, incident.acknowledged_by, "
        "incident.ack_seconds, incident.dispatched_at, incident.vehicle_id, incident.closed_at, incident.closed_by "
        f"FROM incident WHERE {_in(n)} ORDER BY incident.received_at DESC, incident.id DESC "
        f"LIMIT ${n + 1}::INTEGER OFFSET ${n + 2}::INTEGER"
    )


VEHICLE_SQL = "SELECT vehicle.id, vehicle.callsign, vehicle.region, vehicle.active FROM vehicle WHERE vehicle.token_hash = $1::VARCHAR"
INSERT_SQL = (
    "INSERT INTO vehicle_ping (id, vehicle_id, lat, lng, speed, heading, ts, received_at) VALUES "
    "(nextval('vehicle_ping_id_seq'), $1::UUID, $2::FLOAT, $3::FLOAT, $4::FLOAT, $5::FLOAT, "
    "$6::TIMESTAMP WITH TIME ZONE, $7::TIMESTAMP WITH TIME ZONE) RETURNING vehicle_ping.id"
)
UPDATE_SQL = (
    "UPDATE vehicle SET last_lat=$1::FLOAT, last_lng=$2::FLOAT, last_speed=$3::FLOAT, last_heading=$4::FLOAT, "
    "last_ping_at=$5::TIMESTAMP WITH TIME ZONE, updated_at=$6::TIMESTAMP WITH TIME ZONE WHERE vehicle.id = $7::UUID "
    "AND (vehicle.last_ping_at IS NULL OR vehicle.last_ping_at < $5::TIMESTAMP WITH TIME ZONE)"
)


class Incident(msgspec.Struct):
    """naboom's ``IncidentOut``: the same keys in the same order."""

    id: uuid.UUID
    region: str
    status: str
    source: str
    device: str | None
    msg: str
    lat: float | None
    lng: float | None
    acc: float | None
    ts: datetime
    created_at: datetime
    sos_count: int
    last_sos_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    ack_seconds: float | None
    dispatched_at: datetime | None
    vehicle_id: uuid.UUID | None
    closed_at: datetime | None
    closed_by: str | None


class Page(msgspec.Struct):
    """naboom's ``Page``."""

    items: list[Incident]
    total: int
    limit: int
    offset: int


class Ping(msgspec.Struct, forbid_unknown_fields=True):
    """naboom's ``PingIn``, decoded as strictly."""

    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    lng: Annotated[float, msgspec.Meta(ge=-180, le=180)]
    ts: Annotated[datetime, msgspec.Meta(tz=True)]
    speed: Annotated[float, msgspec.Meta(ge=0, le=100)] | None = None
    heading: Annotated[float, msgspec.Meta(ge=0, le=360)] | None = None


_encode = msgspec.json.Encoder().encode
_decode_ping = msgspec.json.Decoder(Ping).decode
_decode_regions = msgspec.json.Decoder(list[str]).decode
_KEY = os.environ.get("NABOOM_SECRET_KEY", "")
_pool: asyncpg.Pool | None = None
_ACCEPTED = b'{"accepted":true}'


def _headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _headers(body)})
    await send({"type": "http.response.body", "body": body})


def _bearer(scope: dict[str, Any]) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return value[7:].strip().decode()
    return None


async def incidents(scope: dict[str, Any]) -> tuple[int, bytes]:
    """The operator's default page, after the same token and session checks as naboom's."""
    token = _bearer(scope)
    if token is None:
        return 401, b'{"detail":"authentication required"}'
    try:
        claims = jwt.decode(token, _KEY, algorithms=["HS256"], options={"require": ["exp", "sub", "jti"]})
        user_id, session_id = uuid.UUID(claims["sub"]), uuid.UUID(claims["jti"])
    except (jwt.PyJWTError, ValueError):
        return 401, b'{"detail":"token is not valid"}'
    assert _pool is not None
    async with _pool.acquire() as conn:
        row = await conn.fetchrow(SESSION_SQL, session_id, user_id)
        if (
            row is None
            or row["revoked_at"] is not None
            or row["expires_at"] <= datetime.now(UTC)
            or not row["active"]
        ):
            return 401, b'{"detail":"session not valid"}'
        regions = _decode_regions(row["regions"])
        if row["role"] == "admin":
            return 500, b'{"detail":"the bench asks as an operator"}'
        total = await conn.fetchval(count_sql(len(regions)), *regions)
        rows = await conn.fetch(page_sql(len(regions)), *regions, PAGE, 0)
    return 200, _encode(Page(items=[Incident(*r) for r in rows], total=total, limit=PAGE, offset=0))


async def ping(scope: dict[str, Any], body: bytes) -> tuple[int, bytes]:
    """Store one ping as naboom does (trail row, then the latest position if it is newer)."""
    token = _bearer(scope)
    if not token:
        return 401, b'{"detail":"vehicle token required"}'
    try:
        data = _decode_ping(body)
    except msgspec.DecodeError:  # ValidationError included
        return 422, b'{"detail":"invalid ping"}'
    now = datetime.now(UTC)
    if data.ts > now + FUTURE_SKEW or data.ts < now - MAX_PING_AGE:
        return 422, b'{"detail":"ts out of bounds"}'
    ts = data.ts.astimezone(UTC)
    assert _pool is not None
    async with _pool.acquire() as conn:
        vehicle = await conn.fetchrow(VEHICLE_SQL, hashlib.sha256(token.encode()).hexdigest())
        if vehicle is None or not vehicle["active"]:
            return 401, b'{"detail":"unknown or deactivated vehicle"}'
        async with conn.transaction():
            await conn.fetchval(
                INSERT_SQL, vehicle["id"], data.lat, data.lng, data.speed, data.heading, ts, now
            )
            await conn.execute(
                UPDATE_SQL, data.lat, data.lng, data.speed, data.heading, ts, now, vehicle["id"]
            )
    return 202, _ACCEPTED


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Route the two endpoints by path; take part in the lifespan protocol (opens the pool)."""
    global _pool
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                dsn = os.environ["NABOOM_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
                _pool = await asyncpg.create_pool(dsn, min_size=POOL_MIN, max_size=POOL_MAX)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _pool is not None:
                    await _pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    path = scope["path"].rstrip("/")
    if scope["method"] == "GET" and path == "/api/incidents":
        status, answer = await incidents(scope)
    elif scope["method"] == "POST" and path == "/panic/api/vehicle/ping":
        status, answer = await ping(scope, body)
    else:
        status, answer = 404, b'{"detail":"not found"}'
    await _answer(send, status, answer)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        proxy_headers=True,
        forwarded_allow_ips=["127.0.0.1", "::1"],
        timeout_graceful_shutdown=3,
    )


if __name__ == "__main__":
    main()
