"""Coverage tasks."""

from __future__ import annotations

from datetime import UTC, timedelta

from naboom.background.broker import WorkDep, daily, task
from naboom.coverage import service


@task("general", schedule=daily("40 2 * * *"))
async def compute_coverage_all(work: WorkDep, day: str | None = None) -> None:
    """Every region's coverage of ``day`` (YYYY-MM-DD; yesterday, UTC, when not given)."""
    now = work.clock()
    wanted = service.parse_day(day) if day is not None else (now.astimezone(UTC) - timedelta(days=1)).date()
    async with work.db.get_session() as session:
        for code in await service.region_codes(session):
            await service.compute_coverage(session, code, wanted, work.settings.coverage_cell_degrees, now)
        await session.commit()
