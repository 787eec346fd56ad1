"""``/api/regions/{code}/coverage``: patrol coverage per region and day."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import Example
from litestar.params import FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.audit.service import record
from naboom.coverage import service
from naboom.coverage.schemas import CoverageDay, CoverageOut
from naboom.openapi import problems
from naboom.schemas import Limit, Offset, Page
from naboom.settings import Settings
from naboom.users.auth import AuthRequest
from naboom.users.guards import admin_only

_DAY_EXAMPLE = [Example(value="2025-03-10")]
_NOT_FOUND = "No such region in the caller's regions, or no report for it (that day)"


class CoverageController(Controller):
    """Coverage of the caller's regions (admins: all); admins compute it on demand."""

    path = "/api/regions"
    tags = ["coverage"]

    @get("/{code:str}/coverage", responses=problems(404, why={404: _NOT_FOUND}))
    async def get_coverage(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        code: FromPath[str],
        day: Annotated[
            str | None,
            QueryParameter(description="The UTC day, YYYY-MM-DD; the newest report when left out", max_length=40,
                           examples=_DAY_EXAMPLE),
        ] = None,
    ) -> CoverageOut:
        """Ping counts per grid cell on one day, with totals."""
        wanted = service.parse_day(day) if day is not None else None
        return await service.report(db_session, request.user, code, wanted)

    @get("/{code:str}/coverage/days")
    async def coverage_days(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        code: FromPath[str],
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[CoverageDay]:
        """The days with a report, newest first."""
        return await service.days(db_session, request.user, code, limit=limit, offset=offset)

    @post(
        "/{code:str}/coverage/{day:str}/compute",
        guards=[admin_only],
        status_code=200,
        responses=problems(400, why={400: "The day is not YYYY-MM-DD, or it is after today (UTC)"}),
    )
    async def compute(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], code: FromPath[str], day: FromPath[str]
    ) -> CoverageOut:
        """Compute (or recompute) the region's report of ``day`` now; it replaces the stored one."""
        now = datetime.now(UTC)
        wanted = service.computable_day(day, now)
        await service.visible_region(db_session, request.user, code)
        settings: Settings = request.app.state.settings
        report = await service.compute_coverage(db_session, code, wanted, settings.coverage_cell_degrees, now)
        record(db_session, request.user, "coverage.compute", "region", code, {"day": wanted.isoformat()})
        return report
