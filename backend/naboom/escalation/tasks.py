"""Escalation tasks: the periodic check that fires the levels that are due."""

from __future__ import annotations

from datetime import UTC, datetime

from naboom.background.broker import WorkDep, every, task
from naboom.escalation.service import escalate_due
from naboom.notify.tasks import send_sms


@task("critical", schedule=every(lambda s: s.escalation_check_seconds))
async def check_escalations(work: WorkDep, now: str | None = None) -> int:
    """Fire every escalation level due at ``now`` (ISO 8601; default: the clock), then send and broadcast.

    ``now`` is there so that tests can drive the clock through the real broker.
    """
    at = _instant(now) if now else work.clock()
    async with work.db.get_session() as session:
        fired = await escalate_due(session, at, public_url=work.settings.public_url)
        await session.commit()
    for escalation in fired:
        for message_id in escalation.message_ids:
            await work.tasks.kick(send_sms, str(message_id))
        await work.feed.publish(
            escalation.incident.region, "incident.updated", escalation.incident.event_data(escalation.change)
        )
    return len(fired)


def _instant(value: str) -> datetime:
    """An ISO 8601 date-time; UTC when it has no offset."""
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
