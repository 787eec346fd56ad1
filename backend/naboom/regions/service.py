"""Regions: created by admins (or on first use by the CLI)."""

from __future__ import annotations

from collections.abc import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import select

from naboom.db import models as m
from naboom.errors import ConflictError, NaboomError, NotFoundError
from naboom.regions.schemas import RegionCreate, RegionOut, RegionUpdate


def region_out(region: m.Region) -> RegionOut:
    """A region as clients see it."""
    return RegionOut(code=region.code, name=region.name, timezone=region.timezone, created_at=region.created_at)


def _check_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise NaboomError(f"unknown timezone {name!r}; use an IANA name such as Africa/Johannesburg") from None


class RegionService(SQLAlchemyAsyncRepositoryService[m.Region]):
    """Regions of responsibility."""

    class Repo(SQLAlchemyAsyncRepository[m.Region]):
        model_type = m.Region
        id_attribute = "code"

    repository_type = Repo

    async def list_all(self) -> list[RegionOut]:
        """Every region by code."""
        rows = await self.repository.session.scalars(select(m.Region).order_by(m.Region.code))
        return [region_out(r) for r in rows]

    async def create_region(self, data: RegionCreate) -> m.Region:
        """A new region; codes are unique."""
        _check_timezone(data.timezone)
        if await self.repository.session.get(m.Region, data.code) is not None:
            raise ConflictError(f"region {data.code!r} already exists")
        return await self.repository.add(m.Region(code=data.code, name=data.name, timezone=data.timezone))

    async def update_region(self, code: str, data: RegionUpdate) -> m.Region:
        """Rename or move a region to another timezone."""
        region = await self.get_region(code)
        if data.timezone is not None:
            _check_timezone(data.timezone)
            region.timezone = data.timezone
        if data.name is not None:
            region.name = data.name
        await self.repository.session.flush()
        return region

    async def get_region(self, code: str) -> m.Region:
        """One region or 404."""
        region = await self.repository.session.get(m.Region, code)
        if region is None:
            raise NotFoundError(f"no region {code!r}")
        return region

    async def require(self, codes: Iterable[str]) -> None:
        """Every code must name an existing region (400 otherwise)."""
        wanted = set(codes)
        if not wanted:
            return
        found = set(await self.repository.session.scalars(select(m.Region.code).where(m.Region.code.in_(wanted))))
        if missing := sorted(wanted - found):
            raise NaboomError(f"unknown region(s): {', '.join(missing)}; create them first")

    async def ensure(self, codes: Iterable[str]) -> None:
        """Create any missing region, named after its code (the CLI's convenience)."""
        for code in set(codes):
            if await self.repository.session.get(m.Region, code) is None:
                self.repository.session.add(m.Region(code=code, name=code, timezone=m.DEFAULT_TIMEZONE))
        await self.repository.session.flush()
