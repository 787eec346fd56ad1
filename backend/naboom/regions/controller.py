"""``/api/regions``: regions of responsibility."""

from __future__ import annotations

from litestar import Controller, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.audit.service import record
from naboom.openapi import problems
from naboom.regions.schemas import RegionCreate, RegionOut, RegionUpdate
from naboom.regions.service import RegionService, region_out
from naboom.users.auth import AuthRequest
from naboom.users.guards import admin_only


class RegionController(Controller):
    """Everyone signed in may list regions; admins create and change them."""

    path = "/api/regions"
    tags = ["regions"]

    @get("/")
    async def list_regions(self, request: AuthRequest, db_session: NamedDependency[AsyncSession]) -> list[RegionOut]:
        """Regions the caller may see (all of them for admins)."""
        regions = await RegionService(session=db_session).list_all()
        return [r for r in regions if request.user.can_see(r.code)]

    @post("/", guards=[admin_only], responses=problems(409, why={409: "A region with that code already exists"}))
    async def create_region(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], data: JSONBody[RegionCreate]
    ) -> RegionOut:
        """A new region."""
        region = await RegionService(session=db_session).create_region(data)
        record(db_session, request.user, "region.create", "region", region.code, {"name": region.name})
        return region_out(region)

    @patch("/{code:str}", guards=[admin_only])
    async def update_region(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        code: FromPath[str],
        data: JSONBody[RegionUpdate],
    ) -> RegionOut:
        """Rename a region or change its timezone."""
        region = await RegionService(session=db_session).update_region(code, data)
        record(db_session, request.user, "region.update", "region", code, {"name": region.name, "timezone": region.timezone})
        return region_out(region)
