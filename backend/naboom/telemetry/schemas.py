"""What a device reports on ``device/{pid}/telemetry``."""

from __future__ import annotations

from typing import Annotated

import msgspec

TELEMETRY_TOPIC = "device/+/telemetry"


class TelemetryPayload(msgspec.Struct, forbid_unknown_fields=False):
    """One signed report; the signature covers :data:`naboom.telemetry.service.SIGNED_KEYS` as sent."""

    pid: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    ts: int
    sig: str
    kid: int = 1
    battery: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    signal: Annotated[int, msgspec.Meta(ge=-200, le=0)] | None = None
    firmware: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)] | None = None
    lng: Annotated[float, msgspec.Meta(ge=-180, le=180)] | None = None
