"""Field devices (panic buttons) and their signing keys."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from advanced_alchemy.base import UUIDAuditBase
from advanced_alchemy.types import DateTimeUTC, EncryptedString
from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from naboom.settings import get_settings


def _encryption_key() -> str:
    return get_settings().secret_key


class KeyState(enum.StrEnum):
    """Where a device key is in its life."""

    CURRENT = "current"
    GRACE = "grace"
    REVOKED = "revoked"


class Device(UUIDAuditBase):
    """A panic button or phone app registered to a region."""

    __tablename__ = "device"

    pid: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    region: Mapped[str] = mapped_column(ForeignKey("region.code"), index=True)
    label: Mapped[str | None] = mapped_column(String(200), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    last_message: Mapped[str | None] = mapped_column(String(280), default=None)
    # Telemetry (device/{pid}/telemetry): the latest report, and when the device reported it.
    battery: Mapped[int | None] = mapped_column(Integer, default=None)
    signal_dbm: Mapped[int | None] = mapped_column(Integer, default=None)
    firmware: Mapped[str | None] = mapped_column(String(64), default=None)
    telemetry_lat: Mapped[float | None] = mapped_column(Float, default=None)
    telemetry_lng: Mapped[float | None] = mapped_column(Float, default=None)
    telemetry_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # How long the device may stay silent; unset means NABOOM_DEVICE_HEARTBEAT_SECONDS.
    expected_heartbeat_seconds: Mapped[int | None] = mapped_column(Integer, default=None)
    # The last-heard time of the silence ``device.silent`` was raised for: once per silence.
    silent_since: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    keys: Mapped[list[DeviceKey]] = relationship(
        back_populates="device", lazy="selectin", cascade="all, delete-orphan", order_by="DeviceKey.kid"
    )


class DeviceKey(UUIDAuditBase):
    """One HMAC secret of a device; ``kid`` numbers them per device."""

    __tablename__ = "device_key"
    __table_args__ = (UniqueConstraint("device_id", "kid"),)

    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("device.id", ondelete="CASCADE"), index=True)
    kid: Mapped[int] = mapped_column(Integer)
    # Encrypted at rest with NABOOM_SECRET_KEY; the plain secret leaves the system once, at creation.
    secret: Mapped[str] = mapped_column(EncryptedString(key=_encryption_key))
    state: Mapped[KeyState] = mapped_column(String(16), default=KeyState.CURRENT)
    grace_until: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    device: Mapped[Device] = relationship(back_populates="keys")
