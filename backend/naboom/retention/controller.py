"""``/api/system/retention``: the retention periods and the last run (admin)."""

from __future__ import annotations

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.retention import service
from naboom.retention.schemas import RetentionStatus
from naboom.users.guards import admin_only


class RetentionController(Controller):
    """What is kept how long, and what the daily run last removed."""

    path = "/api/system"
    tags = ["system"]
    guards = [admin_only]

    @get("/retention")
    async def retention(self, request: Request, db_session: NamedDependency[AsyncSession]) -> RetentionStatus:
        """The configured periods and the newest run's counts (``last_run`` is null before the first run)."""
        policy = service.RetentionPolicy.from_settings(request.app.state.settings)
        return await service.status(db_session, policy)
