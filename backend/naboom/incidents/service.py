"""Queries over incidents, always inside the caller's regions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import func, select

from naboom.db import models as m
from naboom.errors import NotFoundError
from naboom.incidents.schemas import IncidentDetail, IncidentOut, TimelineEntry
from naboom.schemas import Page
from naboom.users.auth import Principal


class IncidentService(SQLAlchemyAsyncRepositoryService[m.Incident]):
    """Reads incidents; every query is scoped to the principal's regions."""

    class Repo(SQLAlchemyAsyncRepository[m.Incident]):
        model_type = m.Incident

    repository_type = Repo

    async def page(
        self,
        principal: Principal,
        *,
        status: Sequence[str] = (),
        region: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[IncidentOut]:
        """Newest first, filtered, scoped."""
        query = select(m.Incident)
        if not principal.is_admin:
            query = query.where(m.Incident.region.in_(principal.regions))
        if region is not None:
            query = query.where(m.Incident.region == region)
        if status:
            query = query.where(m.Incident.status.in_(status))
        if since is not None:
            query = query.where(m.Incident.received_at >= since)
        session = self.repository.session
        total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = await session.scalars(
            query.order_by(m.Incident.received_at.desc(), m.Incident.id.desc()).limit(limit).offset(offset)
        )
        return Page(items=[IncidentOut.from_model(r) for r in rows], total=total, limit=limit, offset=offset)

    async def detail(self, principal: Principal, incident_id: uuid.UUID) -> IncidentDetail:
        """One incident with its timeline; 404 outside the principal's regions."""
        incident = await self.repository.get_one_or_none(id=incident_id)
        if incident is None or not principal.can_see(incident.region):
            raise NotFoundError(f"no incident {incident_id}")
        events = await self.repository.session.scalars(
            select(m.IncidentEvent).where(m.IncidentEvent.incident_id == incident_id).order_by(m.IncidentEvent.id)
        )
        base = IncidentOut.from_model(incident)
        return IncidentDetail(
            **{f: getattr(base, f) for f in base.__struct_fields__},
            timeline=[
                TimelineEntry(id=e.id, type=e.type, actor=e.actor, at=e.created_at, payload=e.payload) for e in events
            ],
        )
