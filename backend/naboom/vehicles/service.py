"""Patrol vehicles: registration, tokens, pings, positions, and who is nearest to an incident."""

from __future__ import annotations

import math
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.audit.service import record
from naboom.db import models as m
from naboom.db.inserts import table_of
from naboom.errors import AuthenticationError, ConflictError, NaboomError, NotFoundError
from naboom.regions.service import RegionService
from naboom.schemas import Page
from naboom.users.auth import Principal, digest
from naboom.vehicles.schemas import (
    NearbyVehicle,
    PingIn,
    PingOut,
    VehicleCreate,
    VehicleCredentials,
    VehicleOut,
    VehiclePosition,
)

EARTH_RADIUS_M = 6_371_008.8
# A ping older than this is a replay or a tracker with a dead clock, not a position.
MAX_PING_AGE = timedelta(days=1)


class InvalidPingError(NaboomError):
    """A well-formed ping whose content cannot be accepted."""

    status_code = 422
    title = "Unprocessable Content"


_pings = table_of(m.VehiclePing)
_vehicles = table_of(m.Vehicle)
_VEHICLE_BY_TOKEN = select(_vehicles.c.id, _vehicles.c.callsign, _vehicles.c.region, _vehicles.c.active).where(
    _vehicles.c.token_hash == bindparam("token_hash")
)
_INSERT_PING = insert(_pings)
# Conditional, so concurrent or out-of-order pings never move a vehicle back in time.
_MOVE_VEHICLE = (
    update(_vehicles)
    .where(
        _vehicles.c.id == bindparam("v_id"),
        or_(_vehicles.c.last_ping_at.is_(None), _vehicles.c.last_ping_at < bindparam("v_ts")),
    )
    .values(
        last_lat=bindparam("v_lat"),
        last_lng=bindparam("v_lng"),
        last_speed=bindparam("v_speed"),
        last_heading=bindparam("v_heading"),
        last_ping_at=bindparam("v_ts"),
    )
)

@dataclass(frozen=True, slots=True)
class PingingVehicle:
    """The vehicle a ping token belongs to."""

    id: uuid.UUID
    callsign: str
    region: str


def new_token() -> str:
    """A vehicle token: 32 random bytes, URL-safe."""
    return secrets.token_urlsafe(32)


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle (haversine) distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


async def nearest_available(
    session: AsyncSession, region: str, lat: float, lng: float, limit: int = 5
) -> list[NearbyVehicle]:
    """Active, available vehicles of ``region`` with a known position, nearest first."""
    rows = await session.scalars(
        select(m.Vehicle).where(
            m.Vehicle.region == region,
            m.Vehicle.active.is_(True),
            m.Vehicle.available.is_(True),
            m.Vehicle.last_lat.is_not(None),
            m.Vehicle.last_lng.is_not(None),
        )
    )
    nearby = [
        NearbyVehicle(
            id=v.id,
            callsign=v.callsign,
            lat=v.last_lat,
            lng=v.last_lng,
            distance_m=round(distance_m(lat, lng, v.last_lat, v.last_lng), 1),
            last_ping_at=v.last_ping_at,
        )
        for v in rows
        if v.last_lat is not None and v.last_lng is not None
    ]
    return sorted(nearby, key=lambda n: n.distance_m)[:limit]


def vehicle_out(vehicle: m.Vehicle, now: datetime) -> VehicleOut:
    """A vehicle without its token hash, with the age of its last position."""
    age = None
    if vehicle.last_ping_at is not None:
        age = round(max(0.0, (now - vehicle.last_ping_at).total_seconds()), 1)
    return VehicleOut(
        id=vehicle.id,
        callsign=vehicle.callsign,
        region=vehicle.region,
        active=vehicle.active,
        available=vehicle.available,
        lat=vehicle.last_lat,
        lng=vehicle.last_lng,
        speed=vehicle.last_speed,
        heading=vehicle.last_heading,
        last_ping_at=vehicle.last_ping_at,
        age_seconds=age,
        created_at=vehicle.created_at,
    )


class VehicleService(SQLAlchemyAsyncRepositoryService[m.Vehicle]):
    """The patrol fleet; reads are scoped to the principal's regions, changes are audited."""

    class Repo(SQLAlchemyAsyncRepository[m.Vehicle]):
        model_type = m.Vehicle

    repository_type = Repo

    async def register(self, principal: Principal, data: VehicleCreate) -> VehicleCredentials:
        """A new vehicle of an existing region, with its first token."""
        principal.require_admin()
        session = self.repository.session
        await RegionService(session=session).require([data.region])
        if await self.repository.exists(callsign=data.callsign):
            raise ConflictError(f"callsign {data.callsign!r} is taken")
        token = new_token()
        vehicle = await self.repository.add(
            m.Vehicle(callsign=data.callsign, region=data.region, token_hash=digest(token), active=True, available=True)
        )
        record(session, principal, "vehicle.create", "vehicle", vehicle.id, {"callsign": data.callsign, "region": data.region})
        return VehicleCredentials(id=vehicle.id, callsign=vehicle.callsign, region=vehicle.region, token=token)

    async def rotate_token(self, principal: Principal, vehicle_id: uuid.UUID) -> VehicleCredentials:
        """A new token; the old one stops working at once."""
        principal.require_admin()
        vehicle = await self._get(principal, vehicle_id)
        token = new_token()
        vehicle.token_hash = digest(token)
        await self.repository.session.flush()
        record(self.repository.session, principal, "vehicle.rotate_token", "vehicle", vehicle.id, {"callsign": vehicle.callsign})
        return VehicleCredentials(id=vehicle.id, callsign=vehicle.callsign, region=vehicle.region, token=token)

    async def set_active(
        self, principal: Principal, vehicle_id: uuid.UUID, active: bool, now: datetime | None = None
    ) -> VehicleOut:
        """Deactivate (its pings are refused, it is never suggested) or reactivate a vehicle."""
        principal.require_admin()
        vehicle = await self._get(principal, vehicle_id)
        vehicle.active = active
        await self.repository.session.flush()
        action = "vehicle.activate" if active else "vehicle.deactivate"
        record(self.repository.session, principal, action, "vehicle", vehicle.id, {"callsign": vehicle.callsign})
        return vehicle_out(vehicle, now or datetime.now(UTC))

    async def page(
        self,
        principal: Principal,
        *,
        region: str | None = None,
        active: bool | None = None,
        limit: int = 50,
        offset: int = 0,
        now: datetime | None = None,
    ) -> Page[VehicleOut]:
        """Vehicles of the principal's regions by callsign, with their latest positions."""
        query = select(m.Vehicle)
        if not principal.is_admin:
            query = query.where(m.Vehicle.region.in_(principal.regions))
        if region is not None:
            query = query.where(m.Vehicle.region == region)
        if active is not None:
            query = query.where(m.Vehicle.active.is_(active))
        session = self.repository.session
        total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = await session.scalars(query.order_by(m.Vehicle.callsign).limit(limit).offset(offset))
        now = now or datetime.now(UTC)
        return Page(items=[vehicle_out(v, now) for v in rows], total=total, limit=limit, offset=offset)

    async def detail(self, principal: Principal, vehicle_id: uuid.UUID, now: datetime | None = None) -> VehicleOut:
        """One vehicle; 404 outside the principal's regions."""
        return vehicle_out(await self._get(principal, vehicle_id), now or datetime.now(UTC))

    async def trail(
        self,
        principal: Principal,
        vehicle_id: uuid.UUID,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[PingOut]:
        """The vehicle's pings with ``since <= ts < until``, oldest first."""
        await self._get(principal, vehicle_id)
        query = select(m.VehiclePing).where(m.VehiclePing.vehicle_id == vehicle_id)
        if since is not None:
            query = query.where(m.VehiclePing.ts >= since)
        if until is not None:
            query = query.where(m.VehiclePing.ts < until)
        session = self.repository.session
        total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = await session.scalars(
            query.order_by(m.VehiclePing.ts, m.VehiclePing.id).limit(limit).offset(offset)
        )
        items = [
            PingOut(lat=p.lat, lng=p.lng, speed=p.speed, heading=p.heading, ts=p.ts, received_at=p.received_at)
            for p in rows
        ]
        return Page(items=items, total=total, limit=limit, offset=offset)

    async def authenticate(self, token: str | None) -> PingingVehicle:
        """The active vehicle holding ``token``, or 401."""
        if not token:
            raise AuthenticationError("vehicle token required: send Authorization: Bearer <vehicle token>")
        # Looked up by its SHA-256: lookup timing tells nothing about the token itself. Four
        # columns, no ORM object: this runs on every ping.
        vehicle = (await self.repository.session.execute(_VEHICLE_BY_TOKEN, {"token_hash": digest(token)})).one_or_none()
        if vehicle is None:
            raise AuthenticationError("unknown vehicle token")
        if not vehicle.active:
            raise AuthenticationError("vehicle is deactivated")
        return PingingVehicle(id=vehicle.id, callsign=vehicle.callsign, region=vehicle.region)

    async def record_ping(
        self, vehicle: PingingVehicle, ping: PingIn, *, max_future: timedelta, now: datetime | None = None
    ) -> VehiclePosition | None:
        """Store a ping in the trail; returns the position to broadcast if it is the vehicle's newest."""
        now = now or datetime.now(UTC)
        if ping.ts > now + max_future:
            raise InvalidPingError(f"ts {ping.ts.isoformat()} is more than {max_future} ahead of the server clock")
        if ping.ts < now - MAX_PING_AGE:
            raise InvalidPingError(f"ts {ping.ts.isoformat()} is more than {MAX_PING_AGE} old")
        ts = ping.ts.astimezone(UTC)
        session = self.repository.session
        # Statements built once (module level), on the tables: the trail row is never read back,
        # so no ORM object is built or flushed, and each ping only binds its values.
        await session.execute(
            _INSERT_PING,
            {
                "vehicle_id": vehicle.id,
                "lat": ping.lat,
                "lng": ping.lng,
                "speed": ping.speed,
                "heading": ping.heading,
                "ts": ts,
                "received_at": now,
            },
        )
        result = await session.execute(
            _MOVE_VEHICLE,
            {"v_id": vehicle.id, "v_lat": ping.lat, "v_lng": ping.lng, "v_speed": ping.speed, "v_heading": ping.heading, "v_ts": ts},
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            return None
        return VehiclePosition(
            id=vehicle.id,
            callsign=vehicle.callsign,
            region=vehicle.region,
            lat=ping.lat,
            lng=ping.lng,
            speed=ping.speed,
            heading=ping.heading,
            ts=ts,
        )

    async def _get(self, principal: Principal, vehicle_id: uuid.UUID) -> m.Vehicle:
        vehicle = await self.repository.get_one_or_none(id=vehicle_id)
        if vehicle is None or not principal.can_see(vehicle.region):
            raise NotFoundError(f"no vehicle {vehicle_id}")
        return vehicle
