"""Vehicle schemas."""

from __future__ import annotations

import uuid
from datetime import datetime

from naboom.schemas import Schema


class NearbyVehicle(Schema):
    """An available vehicle and how far it is from a point."""

    id: uuid.UUID
    callsign: str
    lat: float
    lng: float
    distance_m: float
    last_ping_at: datetime | None
