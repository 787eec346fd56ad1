"""The periodic silent-device check."""

from __future__ import annotations

from datetime import UTC, datetime

from naboom.background.broker import WorkDep, every, task
from naboom.telemetry.service import mark_silent


@task("general", schedule=every(lambda s: s.silent_check_seconds))
async def check_silent_devices(work: WorkDep, now: str | None = None) -> int:
    """Raise ``device.silent`` on the region's live feed, once per silence; ``now`` (ISO 8601) lets tests set the clock."""
    at = _instant(now) if now else work.clock()
    async with work.db.get_session() as session:
        silent = await mark_silent(session, at, work.settings.device_heartbeat_seconds)
        await session.commit()
    for device in silent:
        await work.feed.publish(device.region, "device.silent", device.event_data(at))
    return len(silent)


def _instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
