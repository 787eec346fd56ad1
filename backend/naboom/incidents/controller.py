"""``/api/incidents``: what operators read and do, and the admins' CSV export."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import Example
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.audit.service import record
from naboom.db import models as m
from naboom.incidents.schemas import (
    DispatchIn,
    IncidentDetail,
    IncidentOut,
    IncidentSort,
    NoteIn,
    TimelineEntry,
    TransitionIn,
)
from naboom.incidents.service import BoundingBox, IncidentService, export_csv, export_range
from naboom.openapi import problems
from naboom.realtime.feed import LiveFeed
from naboom.schemas import Page
from naboom.users.auth import AuthRequest
from naboom.users.guards import admin_only

Lat = Annotated[float | None, QueryParameter(ge=-90, le=90)]
Lng = Annotated[float | None, QueryParameter(ge=-180, le=180)]
Since = Annotated[datetime | None, QueryParameter(description="Received at or after (ISO 8601; UTC if no offset)")]
Until = Annotated[datetime | None, QueryParameter(description="Received before (ISO 8601; UTC if no offset)")]
# The export takes plain dates too: "2025-01-01" means its midnight, UTC.
ExportSince = Annotated[
    str | None,
    QueryParameter(
        description="Received at or after: ISO 8601 date or date-time (UTC if no offset); required",
        examples=[Example(value="2025-01-01")],
        max_length=40,
    ),
]
ExportUntil = Annotated[
    str | None,
    QueryParameter(
        description="Received before: ISO 8601 date or date-time (UTC if no offset); required",
        examples=[Example(value="2025-02-01")],
        max_length=40,
    ),
]

_VIEWERS = "Viewers can only read"
_ACTION_PROBLEMS = problems(403, 409, why={403: _VIEWERS, 409: "Not possible in the incident's current status (`current_status`)"})


async def _announce(
    request: AuthRequest, db_session: AsyncSession, result: tuple[IncidentOut, TimelineEntry]
) -> IncidentOut:
    """Commit, then tell the incident's region (``incident.updated`` names the change)."""
    incident, change = result
    await db_session.commit()
    feed: LiveFeed = request.app.state.feed
    await feed.publish(incident.region, "incident.updated", incident.event_data(change))
    return incident


class IncidentController(Controller):
    """Incidents of the caller's regions (admins: all)."""

    path = "/api/incidents"
    tags = ["incidents"]

    @get("/")
    async def list_incidents(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        status: Annotated[list[m.IncidentStatus] | None, QueryParameter(description="Only these statuses")] = None,
        region: Annotated[str | None, QueryParameter(max_length=32)] = None,
        since: Since = None,
        until: Until = None,
        device: Annotated[str | None, QueryParameter(max_length=64, description="Only this device (pid)")] = None,
        min_lat: Lat = None,
        min_lng: Lng = None,
        max_lat: Lat = None,
        max_lng: Lng = None,
        sort: Annotated[IncidentSort, QueryParameter(description="Order; ties broken by id")] = IncidentSort.NEWEST,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=1_000_000_000)] = 0,
    ) -> Page[IncidentOut]:
        """Newest first unless ``sort`` says otherwise; the bounding box needs all four corners."""
        return await IncidentService(session=db_session).page(
            request.user,
            status=status or (),
            region=region,
            since=since,
            until=until,
            device=device,
            bbox=BoundingBox.parse(min_lat, min_lng, max_lat, max_lng),
            sort=sort,
            limit=limit,
            offset=offset,
        )

    @get(
        "/export.csv",
        media_type="text/csv",
        guards=[admin_only],
        response_description="CSV (UTF-8): a header row, then one row per incident, oldest first",
    )
    async def export(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        since: ExportSince = None,
        until: ExportUntil = None,
        region: Annotated[str | None, QueryParameter(max_length=32)] = None,
    ) -> Stream:
        """Admins: incidents received in ``[since, until)`` (both required, at most 366 days) as CSV, streamed."""
        start, end = export_range(request.user, since, until, region)
        record(db_session, request.user, "incident.export", "incident", None,
               {"since": start.isoformat(), "until": end.isoformat(), "region": region})
        name = f"incidents-{start:%Y%m%d}-{end:%Y%m%d}.csv"
        return Stream(
            export_csv(request.app.state.db.get_session, start, end, region),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @get("/{incident_id:uuid}")
    async def get_incident(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], incident_id: FromPath[uuid.UUID]
    ) -> IncidentDetail:
        """One incident, its timeline and the available vehicles nearest to it."""
        return await IncidentService(session=db_session).detail(request.user, incident_id)

    @post("/{incident_id:uuid}/acknowledge", status_code=200, responses=_ACTION_PROBLEMS)
    async def acknowledge(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        incident_id: FromPath[uuid.UUID],
        data: JSONBody[TransitionIn | None] = None,
    ) -> IncidentOut:
        """``open → acknowledged``; 409 in any other status."""
        note = data.note if data else None
        result = await IncidentService(session=db_session).acknowledge(request.user, incident_id, note)
        return await _announce(request, db_session, result)

    @post(
        "/{incident_id:uuid}/dispatch",
        status_code=200,
        responses=problems(
            400, 403, 409,
            why={
                400: "No such vehicle in the incident's region",
                403: _VIEWERS,
                409: "Not possible in the incident's current status, or the vehicle is deactivated or not available",
            },
        ),
    )
    async def dispatch(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        incident_id: FromPath[uuid.UUID],
        data: JSONBody[DispatchIn],
    ) -> IncidentOut:
        """Send a patrol vehicle (acknowledges an open incident; re-assigns a dispatched one)."""
        service = IncidentService(session=db_session)
        result = await service.dispatch(request.user, incident_id, data.vehicle_id, data.note)
        return await _announce(request, db_session, result)

    @post("/{incident_id:uuid}/resolve", status_code=200, responses=_ACTION_PROBLEMS)
    async def resolve(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        incident_id: FromPath[uuid.UUID],
        data: JSONBody[TransitionIn | None] = None,
    ) -> IncidentOut:
        """``acknowledged | dispatched → resolved``; releases the vehicle."""
        note = data.note if data else None
        result = await IncidentService(session=db_session).resolve(request.user, incident_id, note)
        return await _announce(request, db_session, result)

    @post("/{incident_id:uuid}/cancel", status_code=200, responses=_ACTION_PROBLEMS)
    async def cancel(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        incident_id: FromPath[uuid.UUID],
        data: JSONBody[TransitionIn | None] = None,
    ) -> IncidentOut:
        """A false alarm: any status not closed yet ``→ cancelled``; releases the vehicle."""
        note = data.note if data else None
        result = await IncidentService(session=db_session).cancel(request.user, incident_id, note)
        return await _announce(request, db_session, result)

    @post("/{incident_id:uuid}/notes", status_code=201, responses=problems(403, why={403: _VIEWERS}))
    async def add_note(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        incident_id: FromPath[uuid.UUID],
        data: JSONBody[NoteIn],
    ) -> TimelineEntry:
        """A note on the timeline (any status); answers the new timeline entry."""
        result = await IncidentService(session=db_session).add_note(request.user, incident_id, data.text)
        await _announce(request, db_session, result)
        return result[1]
