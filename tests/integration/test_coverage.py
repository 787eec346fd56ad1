"""Patrol coverage on real PostgreSQL: pings at known positions land in exactly the expected cells."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from naboom.background.broker import open_work
from naboom.coverage.service import compute_coverage
from naboom.coverage.tasks import compute_coverage_all
from naboom.db import models as m
from naboom.settings import Settings
from tests.integration.api_helpers import Api, assert_problem
from tests.support import Server

DAY = date(2025, 3, 10)
START = datetime.combine(DAY, time.min, tzinfo=UTC)


@pytest.fixture(scope="module")
async def sessions(server: Server) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    assert server.stack.database_url is not None
    engine = create_async_engine(server.stack.database_url)
    try:
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def admin(server: Server) -> Api:
    return Api(server.stack, server.stack.admin())


async def _vehicle(admin: Api, region: str) -> uuid.UUID:
    body = {"callsign": f"CV-{uuid.uuid4().hex[:8]}", "region": region}
    return uuid.UUID(admin.ok("POST", "/api/vehicles", body, status=201)["id"])


async def _pings(sessions: async_sessionmaker[AsyncSession], *pings: tuple[uuid.UUID, float, float, datetime]) -> None:
    async with sessions() as session:
        session.add_all(
            m.VehiclePing(vehicle_id=vehicle, lat=lat, lng=lng, ts=at, received_at=at) for vehicle, lat, lng, at in pings
        )
        await session.commit()


@dataclasses.dataclass
class Patrols:
    region: str
    other: str
    v1: uuid.UUID
    v2: uuid.UUID


@pytest.fixture(scope="module")
async def patrols(admin: Api, sessions: async_sessionmaker[AsyncSession]) -> Patrols:
    """Region A's two vehicles pinging on DAY around one cell edge (0.01°), and region B's one, in the same place."""
    region, other = admin.new_region(), admin.new_region()
    v1, v2, v3 = await _vehicle(admin, region), await _vehicle(admin, region), await _vehicle(admin, other)
    hour = timedelta(hours=1)
    await _pings(
        sessions,
        (v1, -24.53, 28.71, START + 8 * hour),  # exactly on the cell's south-west corner: inside it
        (v2, -24.5299999, 28.715, START + 9 * hour),  # just north of the south edge
        (v1, -24.5200001, 28.7199999, START + 10 * hour),  # just south of the north edge, west of the east edge
        (v1, -24.5300001, 28.71, START + 11 * hour),  # just south of the edge: the cell below
        (v2, -24.52, 28.72, START + 12 * hour),  # the next cell's corner
        (v2, -24.525, 28.711, START + timedelta(days=1) - timedelta(microseconds=1)),  # the day's last instant
        (v1, -24.525, 28.711, START - timedelta(microseconds=1)),  # the day before
        (v1, -24.525, 28.711, START + timedelta(days=1)),  # the day after
        (v3, -24.525, 28.711, START + 8 * hour),  # another region's vehicle
    )
    return Patrols(region, other, v1, v2)


EXPECTED_CELLS = [
    {"lat": -24.54, "lng": 28.71, "pings": 1, "vehicles": 1},
    {"lat": -24.53, "lng": 28.71, "pings": 4, "vehicles": 2},
    {"lat": -24.52, "lng": 28.72, "pings": 1, "vehicles": 1},
]


async def test_pings_of_the_day_are_counted_per_cell_with_distinct_vehicles(admin: Api, patrols: Patrols) -> None:
    report = admin.ok("POST", f"/api/regions/{patrols.region}/coverage/{DAY.isoformat()}/compute", status=200)
    assert report["region"] == patrols.region and report["day"] == DAY.isoformat()
    assert report["cell_degrees"] == 0.01
    assert report["cells"] == EXPECTED_CELLS
    assert (report["pings"], report["vehicles"]) == (6, 2)


async def test_negative_coordinates_floor_towards_the_south_west(
    sessions: async_sessionmaker[AsyncSession], admin: Api
) -> None:
    region = admin.new_region()
    vehicle = await _vehicle(admin, region)
    await _pings(
        sessions,
        (vehicle, -0.25, -0.25, START),  # truncation would put this in the cell at (0, 0)
        (vehicle, 0.25, 0.25, START),
        (vehicle, -0.5, -1.0, START),  # on a corner
        (vehicle, -0.5000001, -1.0000001, START),  # just beyond it
    )
    async with sessions() as session:
        report = await compute_coverage(session, region, DAY, 0.5, datetime.now(UTC))
        await session.commit()
    assert [(c.lat, c.lng, c.pings) for c in report.cells] == [
        (-1.0, -1.5, 1),
        (-0.5, -1.0, 1),
        (-0.5, -0.5, 1),
        (0.0, 0.0, 1),
    ]


async def test_recomputing_replaces_the_days_report(admin: Api, sessions: async_sessionmaker[AsyncSession]) -> None:
    region = admin.new_region()
    first_vehicle = await _vehicle(admin, region)
    await _pings(sessions, (first_vehicle, -24.5, 28.75, START))
    path = f"/api/regions/{region}/coverage/{DAY.isoformat()}/compute"
    first = admin.ok("POST", path, status=200)
    assert (first["pings"], first["vehicles"]) == (1, 1)
    newcomer = await _vehicle(admin, region)
    await _pings(sessions, (newcomer, -24.5, 28.75, START + timedelta(hours=13)))
    second = admin.ok("POST", path, status=200)
    assert (second["pings"], second["vehicles"]) == (2, 2)
    assert second["cells"] == [{"lat": -24.5, "lng": 28.75, "pings": 2, "vehicles": 2}]
    assert datetime.fromisoformat(second["computed_at"]) > datetime.fromisoformat(first["computed_at"])
    async with sessions() as session:
        stored = await session.scalar(
            select(func.count()).select_from(m.CoverageReport).where(m.CoverageReport.region == region)
        )
    assert stored == 1
    latest = admin.get(f"/api/regions/{region}/coverage")
    assert latest.status_code == 200, latest.text
    assert latest.json() == second


async def test_the_regions_viewers_read_it_and_other_regions_operators_get_404(admin: Api, patrols: Patrols) -> None:
    computed = admin.ok("POST", f"/api/regions/{patrols.region}/coverage/{DAY.isoformat()}/compute", status=200)
    viewer = admin.login_as(admin.new_user("viewer", patrols.region))
    r = viewer.get(f"/api/regions/{patrols.region}/coverage", day=DAY.isoformat())
    assert r.status_code == 200, r.text
    assert r.json() == computed
    days = viewer.get(f"/api/regions/{patrols.region}/coverage/days")
    assert days.status_code == 200, days.text
    assert [d["day"] for d in days.json()["items"]] == [DAY.isoformat()]

    outsider = admin.login_as(admin.new_user("operator", patrols.other))
    for path in (f"/api/regions/{patrols.region}/coverage", f"/api/regions/{patrols.region}/coverage/days"):
        assert_problem(outsider.get(path), 404)
    assert_problem(outsider.post(f"/api/regions/{patrols.region}/coverage/{DAY.isoformat()}/compute"), 403)


@pytest.mark.parametrize("day", ["2025-13-01", "yesterday", "20250310", "2025-03-10T00:00:00"])
async def test_a_day_that_is_not_yyyy_mm_dd_is_a_400_problem(admin: Api, patrols: Patrols, day: str) -> None:
    problem = assert_problem(admin.get(f"/api/regions/{patrols.region}/coverage", day=day), 400)
    assert "YYYY-MM-DD" in problem["detail"]
    problem = assert_problem(admin.post(f"/api/regions/{patrols.region}/coverage/{day}/compute"), 400)
    assert "YYYY-MM-DD" in problem["detail"]


async def test_computing_a_future_day_or_an_unknown_region_is_refused(admin: Api, patrols: Patrols) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    problem = assert_problem(admin.post(f"/api/regions/{patrols.region}/coverage/{tomorrow}/compute"), 400)
    assert "future" in problem["detail"]
    assert_problem(admin.post(f"/api/regions/ZA-nosuch/coverage/{DAY.isoformat()}/compute"), 404)
    assert_problem(admin.get(f"/api/regions/{patrols.region}/coverage", day="2001-01-01"), 404)


async def test_the_daily_task_computes_yesterday_for_every_region(
    server: Server, patrols: Patrols, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # Shortly after midnight on the day after DAY: "yesterday" is DAY.
    clock = START + timedelta(days=1, minutes=40)
    async with open_work(Settings.from_env(server.stack.env())) as work:
        await compute_coverage_all(dataclasses.replace(work.context, clock=lambda: clock))
    async with sessions() as session:
        reports: dict[str, Any] = {
            r.region: r for r in await session.scalars(select(m.CoverageReport).where(m.CoverageReport.day == DAY))
        }
        regions = set(await session.scalars(select(m.Region.code)))
    assert set(reports) == regions
    assert all(r.computed_at == clock for r in reports.values())
    assert reports[patrols.region].cells == EXPECTED_CELLS
    assert (reports[patrols.other].pings, reports[patrols.other].vehicles) == (1, 1)
