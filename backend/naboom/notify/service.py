"""Outbound SMS: queueing messages idempotently (sending lives in ``sender``, written per issue 4)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from naboom.db import models as m
from naboom.db.inserts import insert_ignore, table_of


def message_key(incident_id: uuid.UUID | str, step: str, recipient: str) -> str:
    """The idempotency key of one send: incident, step and recipient."""
    return f"{incident_id}:{step}:{recipient}"


async def queue_messages(
    session: AsyncSession,
    *,
    incident_id: uuid.UUID,
    region: str,
    step: str,
    recipients: Iterable[str],
    body: str,
    now: datetime,
) -> list[uuid.UUID]:
    """Log one ``queued`` message per recipient; returns the ids of those not queued before.

    A second call for the same (incident, step, recipient) adds nothing, so whoever queues may
    retry freely. The caller commits, then kicks ``send_sms`` for each returned id.
    """
    rows = [
        {
            "id": uuid.uuid4(),
            "key": message_key(incident_id, step, recipient),
            "incident_id": incident_id,
            "region": region,
            "step": step,
            "recipient": recipient,
            "body": body,
            "status": m.MessageStatus.QUEUED,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for recipient in dict.fromkeys(recipients)
    ]
    if not rows:
        return []
    stmt = insert_ignore(session, table_of(m.OutboundMessage)).returning(table_of(m.OutboundMessage).c.id)
    return list(await session.scalars(stmt, rows))
