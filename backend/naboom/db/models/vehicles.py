"""Patrol vehicles and their position pings."""

from __future__ import annotations

import uuid
from datetime import datetime

from advanced_alchemy.base import BigIntBase, UUIDAuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Boolean, Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column


class Vehicle(UUIDAuditBase):
    """A patrol vehicle of a region; it pings with its own token (stored as a SHA-256 hash)."""

    __tablename__ = "vehicle"

    callsign: Mapped[str] = mapped_column(String(40), unique=True)
    region: Mapped[str] = mapped_column(ForeignKey("region.code"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    last_lat: Mapped[float | None] = mapped_column(Float, default=None)
    last_lng: Mapped[float | None] = mapped_column(Float, default=None)
    last_speed: Mapped[float | None] = mapped_column(Float, default=None)
    last_heading: Mapped[float | None] = mapped_column(Float, default=None)
    last_ping_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class VehiclePing(BigIntBase):
    """One position report: the trail of a vehicle."""

    __tablename__ = "vehicle_ping"
    __table_args__ = (Index("ix_vehicle_ping_vehicle_ts", "vehicle_id", "ts"),)

    vehicle_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vehicle.id", ondelete="CASCADE"))
    lat: Mapped[float] = mapped_column(Float)
    lng: Mapped[float] = mapped_column(Float)
    speed: Mapped[float | None] = mapped_column(Float, default=None)
    heading: Mapped[float | None] = mapped_column(Float, default=None)
    ts: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)
