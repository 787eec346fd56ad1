"""Incident schemas for REST and the live feed."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec

from naboom.db import models as m
from naboom.schemas import Schema
from naboom.vehicles.schemas import NearbyVehicle

NoteText = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


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
    last_sos_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    ack_seconds: float | None = None
    dispatched_at: datetime | None = None
    vehicle_id: uuid.UUID | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None

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
            last_sos_at=incident.last_sos_at,
            acknowledged_at=incident.acknowledged_at,
            acknowledged_by=incident.acknowledged_by,
            ack_seconds=incident.ack_seconds,
            dispatched_at=incident.dispatched_at,
            vehicle_id=incident.vehicle_id,
            closed_at=incident.closed_at,
            closed_by=incident.closed_by,
        )

    def event_data(self, change: Change | None = None) -> dict[str, Any]:
        """The JSON-ready fields carried by ``incident.*`` live events; ``change`` says what caused an update."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        if change is not None:
            data["change"] = msgspec.to_builtins(change)
        return data


class Change(Schema):
    """What happened to an incident: a timeline event as the live feed carries it."""

    type: str
    actor: str
    at: datetime
    payload: dict[str, Any]


class TimelineEntry(Change):
    """One event on an incident's timeline."""

    id: int


class IncidentDetail(IncidentOut):
    """An incident with its whole timeline and the available vehicles nearest to it."""

    timeline: list[TimelineEntry] = msgspec.field(default_factory=list)
    vehicle_callsign: str | None = None
    # active, available vehicles of the region nearest first; empty when the incident is closed or unlocated
    nearest_vehicles: list[NearbyVehicle] = msgspec.field(default_factory=list)


class TransitionIn(Schema):
    """Optional body of ``acknowledge``, ``resolve`` and ``cancel``."""

    note: NoteText | None = None


class DispatchIn(Schema):
    """Body of ``dispatch``: the patrol vehicle to send."""

    vehicle_id: uuid.UUID
    note: NoteText | None = None


class NoteIn(Schema):
    """Body of ``notes``."""

    text: NoteText


class IncidentSort(enum.StrEnum):
    """Orders of the incident list; ties are broken by id, so pages never overlap."""

    NEWEST = "-received_at"
    OLDEST = "received_at"
    # open, acknowledged, dispatched, resolved, cancelled; newest first within each
    STATUS = "status"
