"""Patrol coverage: how a region's vehicle pings of one UTC day spread over a grid.

The grid is fixed to the coordinates, not to the region: a cell is ``floor(lat / size),
floor(lng / size)``, named by its south-west corner, so the same place is the same cell on
every day and in every region. Counting is done by the database, grouped by cell; a report is
stored per region and day and replaced when it is computed again.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, Float, Integer, case, cast, distinct, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.coverage.schemas import CoverageCell, CoverageDay, CoverageOut
from naboom.db import models as m
from naboom.db.inserts import table_of
from naboom.errors import NaboomError, NotFoundError
from naboom.schemas import Page
from naboom.users.auth import Principal

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# lat / size of a point exactly on a cell edge can come out a hair below the whole number in
# binary floating point (and floor would put it one cell south or west); the nudge is far below
# a millimetre.
_EDGE_NUDGE = 1e-9
# Edges are multiples of the cell size; rounded, so -24.53 is not shown as -24.530000000000001.
_EDGE_DECIMALS = 9


def parse_day(value: str) -> date:
    """A UTC day written ``YYYY-MM-DD``, or 400."""
    try:
        if _DAY.fullmatch(value):
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise NaboomError(f"day must be a date written YYYY-MM-DD (a UTC day), got {value[:40]!r}")


def _floor(value: ColumnElement[Any], dialect: str) -> ColumnElement[int]:
    """``floor(value)`` as an integer, rounding towards minus infinity on both backends.

    PostgreSQL's ``CAST(x AS INTEGER)`` rounds to nearest, SQLite's truncates towards zero (so
    -0.5 and 0.5 would share cell 0), and SQLite has ``floor()`` only when built with its math
    functions. South Africa lies south of the equator: every latitude there is negative.
    """
    if dialect == "postgresql":
        return cast(func.floor(value), Integer)
    truncated = cast(value, Integer)
    return case((value < truncated, truncated - 1), else_=truncated)


async def compute_coverage(
    session: AsyncSession, region: str, day: date, cell_degrees: float, now: datetime
) -> CoverageOut:
    """Count ``region``'s pings received on ``day`` (UTC) per cell of ``cell_degrees``; store it, replacing any earlier report."""
    if not cell_degrees > 0:
        raise ValueError(f"cell size must be positive, got {cell_degrees}")
    dialect = session.get_bind().dialect.name
    start = datetime.combine(day, time.min, tzinfo=UTC)
    size = literal(cell_degrees, Float)
    ping = m.VehiclePing
    pings = (
        select(
            ping.vehicle_id,
            _floor(ping.lat / size + _EDGE_NUDGE, dialect).label("row"),
            _floor(ping.lng / size + _EDGE_NUDGE, dialect).label("col"),
        )
        .join(m.Vehicle, m.Vehicle.id == ping.vehicle_id)
        .where(m.Vehicle.region == region, ping.received_at >= start, ping.received_at < start + timedelta(days=1))
        .subquery()
    )
    grouped = await session.execute(
        select(pings.c.row, pings.c.col, func.count(), func.count(distinct(pings.c.vehicle_id)))
        .group_by(pings.c.row, pings.c.col)
        .order_by(pings.c.row, pings.c.col)
    )
    cells = [
        CoverageCell(
            lat=round(row * cell_degrees, _EDGE_DECIMALS),
            lng=round(col * cell_degrees, _EDGE_DECIMALS),
            pings=count,
            vehicles=vehicles,
        )
        for row, col, count, vehicles in grouped
    ]
    total, vehicles = (
        await session.execute(select(func.count(), func.count(distinct(pings.c.vehicle_id))).select_from(pings))
    ).one()
    report = CoverageOut(
        region=region, day=day, cell_degrees=cell_degrees, pings=total, vehicles=vehicles, cells=cells, computed_at=now
    )
    await _upsert(session, report, dialect)
    return report


async def _upsert(session: AsyncSession, report: CoverageOut, dialect: str) -> None:
    """One row per region and day: a recomputation replaces the earlier one."""
    table = table_of(m.CoverageReport)
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).values(
        region=report.region,
        day=report.day,
        cell_degrees=report.cell_degrees,
        pings=report.pings,
        vehicles=report.vehicles,
        cells=msgspec.to_builtins(report.cells),
        computed_at=report.computed_at,
    )
    replaced = ("cell_degrees", "pings", "vehicles", "cells", "computed_at")
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["region", "day"], set_={name: statement.excluded[name] for name in replaced}
        )
    )


async def region_codes(session: AsyncSession) -> list[str]:
    """Every region's code."""
    return list(await session.scalars(select(m.Region.code).order_by(m.Region.code)))


async def visible_region(session: AsyncSession, principal: Principal, code: str) -> str:
    """``code`` if the region exists and ``principal`` may see it; 404 otherwise (the same answer either way)."""
    if "\x00" in code or not principal.can_see(code) or await session.get(m.Region, code) is None:
        raise NotFoundError(f"no region {code[:40]!r}")
    return code


def _out(row: m.CoverageReport) -> CoverageOut:
    return CoverageOut(
        region=row.region,
        day=row.day,
        cell_degrees=row.cell_degrees,
        pings=row.pings,
        vehicles=row.vehicles,
        cells=msgspec.convert(row.cells, list[CoverageCell]),
        computed_at=row.computed_at,
    )


async def report(session: AsyncSession, principal: Principal, code: str, day: date | None) -> CoverageOut:
    """The region's report of ``day``, or its newest when no day is given; 404 when there is none."""
    await visible_region(session, principal, code)
    query = select(m.CoverageReport).where(m.CoverageReport.region == code)
    if day is not None:
        query = query.where(m.CoverageReport.day == day)
    row = await session.scalar(query.order_by(m.CoverageReport.day.desc()).limit(1))
    if row is None:
        when = f"on {day.isoformat()}" if day is not None else "yet"
        raise NotFoundError(f"no coverage report for region {code!r} {when}")
    return _out(row)


async def days(session: AsyncSession, principal: Principal, code: str, *, limit: int, offset: int) -> Page[CoverageDay]:
    """The days the region has reports for, newest first."""
    await visible_region(session, principal, code)
    where = m.CoverageReport.region == code
    total = await session.scalar(select(func.count()).select_from(m.CoverageReport).where(where)) or 0
    rows = await session.execute(
        select(m.CoverageReport.day, m.CoverageReport.pings, m.CoverageReport.vehicles, m.CoverageReport.computed_at)
        .where(where)
        .order_by(m.CoverageReport.day.desc())
        .limit(limit)
        .offset(offset)
    )
    items = [CoverageDay(day=d, pings=p, vehicles=v, computed_at=c) for d, p, v, c in rows]
    return Page(items=items, total=total, limit=limit, offset=offset)


def computable_day(value: str, now: datetime) -> date:
    """A day that can be computed: parsed, and not after today (UTC)."""
    day = parse_day(value)
    today = now.astimezone(UTC).date()
    if day > today:
        raise NaboomError(f"day {day.isoformat()} is in the future (today is {today.isoformat()}, UTC)")
    return day
