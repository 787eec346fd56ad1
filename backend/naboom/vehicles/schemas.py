"""Vehicle schemas: admins name a vehicle and its region, never its id or token."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec

from naboom.regions.schemas import RegionCode
from naboom.schemas import Schema

Callsign = Annotated[
    str, msgspec.Meta(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._/-]*$", examples=["Alpha-1"])
]
# A patrol car does not go faster than 100 m/s (360 km/h): anything above is a broken sensor.
MAX_SPEED_MPS = 100.0


class VehicleCreate(Schema):
    """What an admin may say about a new vehicle."""

    callsign: Callsign
    region: RegionCode


class VehicleCredentials(Schema):
    """The only time a vehicle token leaves the system: at registration and rotation."""

    id: uuid.UUID
    callsign: str
    region: str
    token: str


class VehicleOut(Schema):
    """A vehicle and its latest known position (``None`` until its first ping)."""

    id: uuid.UUID
    callsign: str
    region: str
    active: bool
    available: bool
    lat: float | None
    lng: float | None
    speed: float | None
    heading: float | None
    last_ping_at: datetime | None
    age_seconds: float | None
    created_at: datetime


class PingIn(Schema):
    """One position report from a vehicle; decoded strictly (no strings for numbers).

    ``ts`` is when the vehicle took the fix, ISO 8601 with a UTC offset (``2025-06-01T08:30:00Z``);
    it may be at most 5 minutes ahead of the server and at most one day old.
    """

    lat: Annotated[float, msgspec.Meta(ge=-90, le=90, description="WGS84 degrees")]
    lng: Annotated[float, msgspec.Meta(ge=-180, le=180, description="WGS84 degrees")]
    ts: Annotated[datetime, msgspec.Meta(tz=True, description="ISO 8601 with offset, e.g. 2025-06-01T08:30:00Z")]
    speed: Annotated[float, msgspec.Meta(ge=0, le=MAX_SPEED_MPS, description="metres per second, 0 to 100")] | None = None
    heading: Annotated[float, msgspec.Meta(ge=0, le=360, description="degrees clockwise from true north, 0 to 360")] | None = None


class PingAccepted(Schema):
    """The ping is stored (and, if it is the vehicle's newest, broadcast)."""

    accepted: bool = True


class PingOut(Schema):
    """One point of a vehicle's trail."""

    lat: float
    lng: float
    speed: float | None
    heading: float | None
    ts: datetime
    received_at: datetime


class VehiclePosition(Schema):
    """The ``vehicle.position`` live event (the feed adds ``type`` and ``event_id``)."""

    id: uuid.UUID
    callsign: str
    region: str
    lat: float
    lng: float
    speed: float | None
    heading: float | None
    ts: datetime

    def event_data(self) -> dict[str, Any]:
        """The JSON-ready fields of the event."""
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]


class NearbyVehicle(Schema):
    """An available vehicle and how far it is from a point."""

    id: uuid.UUID
    callsign: str
    lat: float
    lng: float
    distance_m: float
    last_ping_at: datetime | None
