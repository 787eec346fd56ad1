"""Notify tasks: SMS alerts for new incidents, sending one message, the outbox sweep."""

from __future__ import annotations

import logging
import uuid

from naboom.background.broker import RetryLater, WorkDep, every, task
from naboom.notify.alerts import parse_ids, queue_incident_alerts, stale_messages, unalerted_incidents
from naboom.notify.sender import SendResult, send_message

log = logging.getLogger(__name__)

_KICK_BATCH = 100


@task("critical")
async def alert_new_incidents(incident_ids: list[str], work: WorkDep) -> None:
    """Queue and send the responders' SMS of each new incident (idempotent per incident and recipient)."""
    async with work.db.get_session() as session:
        message_ids = await queue_incident_alerts(session, parse_ids(incident_ids), work.clock())
        await session.commit()
    for message_id in message_ids:
        await work.tasks.kick(send_sms, str(message_id))


@task("critical", retry=True)
async def send_sms(message_id: str, work: WorkDep) -> None:
    """Send one outbound message, at most once when the outcome of an earlier attempt is known."""
    try:
        parsed = uuid.UUID(message_id)
    except ValueError:
        log.warning("send_sms: malformed message id %r", message_id)
        return
    if await send_message(work, parsed) == SendResult.RETRY:
        raise RetryLater(f"SMS {message_id} will be retried")


@task("critical", schedule=every(lambda s: s.outbox_sweep_seconds))
async def sweep_outbox(work: WorkDep) -> None:
    """Queue alerts that were never queued and re-kick messages left waiting."""
    now = work.clock()
    async with work.db.get_session() as session:
        incident_ids = await unalerted_incidents(session, now)
        message_ids = await stale_messages(session, now, work.settings)
    if incident_ids:
        log.warning("outbox sweep: %d incident(s) were never alerted; alerting them now", len(incident_ids))
    for start in range(0, len(incident_ids), _KICK_BATCH):
        await work.tasks.kick(alert_new_incidents, [str(i) for i in incident_ids[start : start + _KICK_BATCH]])
    if message_ids:
        log.info("outbox sweep: re-kicking %d waiting message(s)", len(message_ids))
    for message_id in message_ids:
        await work.tasks.kick(send_sms, str(message_id))
