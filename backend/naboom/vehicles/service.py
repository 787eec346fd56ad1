"""Patrol vehicles: registration, pings, positions, and who is nearest to an incident."""

from __future__ import annotations

import math

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.db import models as m
from naboom.vehicles.schemas import NearbyVehicle

EARTH_RADIUS_M = 6_371_008.8


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
