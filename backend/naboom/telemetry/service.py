"""Record telemetry on the device; find devices silent for longer than their expected heartbeat."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import noload

from naboom.db import models as m
from naboom.ingest import signing
from naboom.telemetry.schemas import TelemetryPayload

# The telemetry twin of the SOS canonical body (CONTRACT §1): these keys, as sent, sorted, compact.
SIGNED_KEYS = ("pid", "ts", "kid", "battery", "signal", "firmware", "lat", "lng")
FUTURE_SKEW = timedelta(minutes=5)

_decoder = msgspec.json.Decoder()


class TelemetryRejected(Exception):
    """A report that is not believed; ``reason`` is a short code for logs and metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def sign(payload: Mapping[str, Any], secret_b64: str) -> str:
    """The report's signature: the SOS signing rule over the telemetry fields."""
    return signing.sign(payload, secret_b64, SIGNED_KEYS)


def _parse(body: bytes, topic_pid: str) -> tuple[TelemetryPayload, dict[str, Any]]:
    try:
        raw = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise TelemetryRejected("malformed_json", f"payload is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise TelemetryRejected("malformed_json", "payload must be one JSON object")
    try:
        payload = msgspec.convert(raw, TelemetryPayload)
    except msgspec.ValidationError as exc:
        raise TelemetryRejected("invalid_schema", str(exc)) from None
    if (payload.lat is None) != (payload.lng is None):
        raise TelemetryRejected("invalid_schema", "lat and lng must be given together")
    if payload.pid != topic_pid:
        raise TelemetryRejected(
            "topic_mismatch", f"topic is for {topic_pid!r} but payload pid is {payload.pid!r}"
        )
    return payload, raw


def _verify(
    device: m.Device | None, payload: TelemetryPayload, raw: dict[str, Any], now: datetime
) -> m.Device:
    if device is None or not device.active:
        raise TelemetryRejected("unknown_device", f"no active device {payload.pid!r}")
    key = next((k for k in device.keys if k.kid == payload.kid), None)
    usable = key is not None and (
        key.state == m.KeyState.CURRENT
        or (key.state == m.KeyState.GRACE and key.grace_until is not None and key.grace_until > now)
    )
    if key is None or not usable:
        raise TelemetryRejected("unknown_kid", f"key {payload.kid} of {payload.pid!r} is not usable")
    if not signing.signature_matches(raw, key.secret, payload.sig, SIGNED_KEYS):
        raise TelemetryRejected("bad_signature", "signature does not match the canonical body")
    return device


async def record(session: AsyncSession, body: bytes, topic_pid: str, now: datetime) -> bool:
    """Store a signed report as the device's status; False when an equal or newer one is already stored."""
    payload, raw = _parse(body, topic_pid)
    device = await session.scalar(select(m.Device).where(m.Device.pid == payload.pid))
    device = _verify(device, payload, raw, now)
    at = datetime.fromtimestamp(payload.ts, UTC)
    if at > now + FUTURE_SKEW:
        raise TelemetryRejected("future_ts", f"ts {payload.ts} is more than {FUTURE_SKEW} in the future")
    # Reports may arrive out of order or be replayed: only a newer one changes the status.
    if device.telemetry_at is not None and at <= device.telemetry_at:
        return False
    device.telemetry_at = at
    for field in ("battery", "firmware"):
        if (value := getattr(payload, field)) is not None:
            setattr(device, field, value)
    if payload.signal is not None:
        device.signal_dbm = payload.signal
    if payload.lat is not None:
        device.telemetry_lat, device.telemetry_lng = payload.lat, payload.lng
    return True


@dataclass(frozen=True, slots=True)
class SilentDevice:
    """A device that has just gone silent."""

    pid: str
    region: str
    label: str | None
    last_heard_at: datetime
    expected_heartbeat_seconds: int
    battery: int | None

    def event_data(self, now: datetime) -> dict[str, Any]:
        """The ``device.silent`` live event."""
        return {
            "pid": self.pid,
            "region": self.region,
            "label": self.label,
            "last_heard_at": self.last_heard_at.isoformat(),
            "silent_seconds": int((now - self.last_heard_at).total_seconds()),
            "expected_heartbeat_seconds": self.expected_heartbeat_seconds,
            "battery": self.battery,
        }


def _last_heard(device: m.Device) -> datetime:
    return max(t for t in (device.last_seen_at, device.telemetry_at, device.created_at) if t is not None)


def _silent(device: m.Device, now: datetime, default_seconds: int) -> bool:
    expected = device.expected_heartbeat_seconds or default_seconds
    return now - _last_heard(device) > timedelta(seconds=expected)


async def _active(session: AsyncSession) -> list[m.Device]:
    # Keys are not needed here (and not decrypted for nothing).
    query = select(m.Device).where(m.Device.active.is_(True)).options(noload(m.Device.keys))
    return list(await session.scalars(query))


async def count_silent(session: AsyncSession, now: datetime, default_seconds: int) -> int:
    """Active devices silent for longer than their expected heartbeat now."""
    return sum(_silent(d, now, default_seconds) for d in await _active(session))


async def mark_silent(session: AsyncSession, now: datetime, default_seconds: int) -> list[SilentDevice]:
    """Devices that went silent since their last alert (or ever); each is marked so it is raised once."""
    found = []
    for device in await _active(session):
        if not _silent(device, now, default_seconds):
            continue
        heard = _last_heard(device)
        # Already raised for this silence: the device has not spoken since.
        if device.silent_since is not None and device.silent_since >= heard:
            continue
        device.silent_since = heard
        found.append(
            SilentDevice(
                pid=device.pid,
                region=device.region,
                label=device.label,
                last_heard_at=heard,
                expected_heartbeat_seconds=device.expected_heartbeat_seconds or default_seconds,
                battery=device.battery,
            )
        )
    return found
