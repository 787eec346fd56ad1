"""``/api/incidents``: what operators read."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from litestar import Controller, Request, get
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.incidents.schemas import IncidentDetail, IncidentOut
from naboom.incidents.service import IncidentService
from naboom.schemas import Page
from naboom.users.auth import Principal


class IncidentController(Controller):
    """Incidents of the caller's regions."""

    path = "/api/incidents"
    tags = ["incidents"]

    @get("/")
    async def list_incidents(
        self,
        request: Request[Principal, str, object],
        db_session: AsyncSession,
        status: Annotated[list[str] | None, Parameter(description="Only these statuses")] = None,
        region: Annotated[str | None, Parameter(max_length=32)] = None,
        since: Annotated[datetime | None, Parameter(description="Received at or after (ISO 8601)")] = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        offset: Annotated[int, Parameter(ge=0)] = 0,
    ) -> Page[IncidentOut]:
        """Newest first."""
        service = IncidentService(session=db_session)
        return await service.page(
            request.user, status=status or (), region=region, since=since, limit=limit, offset=offset
        )

    @get("/{incident_id:uuid}")
    async def get_incident(
        self, request: Request[Principal, str, object], db_session: AsyncSession, incident_id: uuid.UUID
    ) -> IncidentDetail:
        """One incident and its timeline."""
        return await IncidentService(session=db_session).detail(request.user, incident_id)
