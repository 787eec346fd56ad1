"""Retention tasks."""

from __future__ import annotations

from datetime import UTC, datetime

from naboom.background.broker import WorkDep, daily, task
from naboom.retention import service


@task("general", schedule=daily("17 2 * * *"))
async def apply_retention(work: WorkDep, now: str | None = None) -> None:
    """Delete or de-identify what is past its retention period; ``now`` (ISO 8601, UTC if no offset) replaces the clock."""
    as_of = work.clock()
    if now is not None:
        parsed = datetime.fromisoformat(now)
        as_of = parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    async with work.db.get_session() as session:
        await service.apply_retention(session, as_of, service.RetentionPolicy.from_settings(work.settings))
        await session.commit()
