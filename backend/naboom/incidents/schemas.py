"""Incident schemas for REST and the live feed."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from naboom.db import models as m
from naboom.schemas import Schema


class IncidentOut(Schema):
    """An incident as operators see it; the keys of the first monitor included (``id, msg, lat, lng, ts``)."""

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

    @classmethod
    def from_model(cls, incident: m.Incident) -> IncidentOut:
        """Build from the ORM row."""
        return cls(
            id=incident.id,
            region=incident.region,
            status=incident.status,
            source=incident.source,
            device=incident.device_pid,
            msg=incident.message,
            lat=incident.lat,
            lng=incident.lng,
            acc=incident.accuracy,
            ts=incident.device_ts,
            created_at=incident.received_at,
            sos_count=incident.sos_count,
        )

    def event_data(self) -> dict[str, Any]:
        """The JSON-ready fields carried by ``incident.*`` live events."""
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]


class TimelineEntry(Schema):
    """One event on an incident's timeline."""

    id: int
    type: str
    actor: str
    at: datetime
    payload: dict[str, Any]


class IncidentDetail(IncidentOut):
    """An incident with its whole timeline."""

    timeline: list[TimelineEntry]
