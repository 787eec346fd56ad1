"""Incidents and their timelines."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from advanced_alchemy.base import BigIntBase, UUIDAuditBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship


class IncidentStatus(enum.StrEnum):
    """The lifecycle of an incident."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"


class IncidentSource(enum.StrEnum):
    """The transport an SOS arrived on."""

    MQTT = "mqtt"
    HTTP = "http"


class Incident(UUIDAuditBase):
    """One emergency, raised by an SOS."""

    __tablename__ = "incident"
    __table_args__ = (Index("ix_incident_region_received", "region", "received_at"),)

    region: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))
    device_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("device.id", ondelete="SET NULL"), index=True)
    device_pid: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(String(280))
    lat: Mapped[float | None] = mapped_column(Float, default=None)
    lng: Mapped[float | None] = mapped_column(Float, default=None)
    accuracy: Mapped[float | None] = mapped_column(Float, default=None)
    device_ts: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)
    status: Mapped[str] = mapped_column(String(16), default=IncidentStatus.OPEN, index=True)
    sos_count: Mapped[int] = mapped_column(Integer, default=1)
    last_sos_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    acknowledged_by: Mapped[str | None] = mapped_column(String(100), default=None)
    ack_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    vehicle_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("vehicle.id", ondelete="SET NULL"), default=None)
    # Indexed: retention ages closed incidents by it.
    closed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None, index=True)
    closed_by: Mapped[str | None] = mapped_column(String(100), default=None)
    # exact | coarse (rounded to about 1 km by retention) | removed
    location_precision: Mapped[str] = mapped_column(String(8), default="exact", server_default="exact")
    # When the responders' SMS for this incident were queued (the sweep finds incidents without).
    alerted_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    events: Mapped[list[IncidentEvent]] = relationship(
        back_populates="incident", lazy="noload", cascade="all, delete-orphan", order_by="IncidentEvent.id"
    )


class IncidentEvent(BigIntBase):
    """One entry on an incident's timeline."""

    __tablename__ = "incident_event"

    incident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonB, default=dict)
    actor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)
    incident: Mapped[Incident] = relationship(back_populates="events")
