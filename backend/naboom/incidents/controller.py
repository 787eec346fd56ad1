"""``/api/incidents``: what operators read."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.incidents.schemas import IncidentDetail, IncidentOut
from naboom.incidents.service import IncidentService
from naboom.schemas import Page
from naboom.users.auth import AuthRequest


class IncidentController(Controller):
    """Incidents of the caller's regions."""

    path = "/api/incidents"
    tags = ["incidents"]

    @get("/")
    async def list_incidents(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        status: Annotated[list[str] | None, QueryParameter(description="Only these statuses")] = None,
        region: Annotated[str | None, QueryParameter(max_length=32)] = None,
        since: Annotated[datetime | None, QueryParameter(description="Received at or after (ISO 8601)")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        offset: Annotated[int, QueryParameter(ge=0)] = 0,
    ) -> Page[IncidentOut]:
        """Newest first."""
        service = IncidentService(session=db_session)
        return await service.page(
            request.user, status=status or (), region=region, since=since, limit=limit, offset=offset
        )

    @get("/{incident_id:uuid}")
    async def get_incident(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], incident_id: FromPath[uuid.UUID]
    ) -> IncidentDetail:
        """One incident and its timeline."""
        return await IncidentService(session=db_session).detail(request.user, incident_id)
