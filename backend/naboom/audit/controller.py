"""``/api/audit``: the audit log (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.audit import service
from naboom.audit.schemas import AuditOut
from naboom.schemas import Limit, Offset, Page
from naboom.users.guards import admin_only


class AuditController(Controller):
    """Who did what, when, from where."""

    path = "/api/audit"
    tags = ["audit"]
    guards = [admin_only]

    @get("/")
    async def list_audit(
        self,
        db_session: NamedDependency[AsyncSession],
        actor: Annotated[str | None, QueryParameter(max_length=100)] = None,
        action: Annotated[str | None, QueryParameter(max_length=60)] = None,
        target_type: Annotated[str | None, QueryParameter(max_length=40)] = None,
        target_id: Annotated[str | None, QueryParameter(max_length=100)] = None,
        since: Annotated[datetime | None, QueryParameter()] = None,
        until: Annotated[datetime | None, QueryParameter()] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[AuditOut]:
        """Newest first."""
        return await service.page(
            db_session, actor=actor, action=action, target_type=target_type, target_id=target_id,
            since=since, until=until, limit=limit, offset=offset,
        )
