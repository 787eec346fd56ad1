"""Writing to the outbox (inside the caller's transaction) and the bridge's queries on it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.db import models as m
from naboom.db.inserts import asyncpg_connection, table_of

CHANNEL = "naboom_outbox"
WEBHOOK_PREFIX = "webhook:"
ALERTS_PREFIX = "panic/alerts/"
WEBHOOK_EVENTS = ("incident.created", "incident.updated")

Outgoing = tuple[str, dict[str, Any], str]
"""``(topic, payload, key)`` of one outbound message."""

# PostgreSQL: one fixed statement for any number of messages, ids in the order given (the bridge's order).
_PG_ENQUEUE = """
INSERT INTO outbox_message (topic, payload, key, created_at, attempts)
SELECT u.topic, u.payload::jsonb, u.key, $4, 0
FROM unnest($1::varchar[], $2::text[], $3::varchar[]) WITH ORDINALITY AS u(topic, payload, key, n)
ORDER BY u.n
"""


_PG_WEBHOOKS = "SELECT id, event_types::text, region FROM webhook WHERE active"
_PG_NOTIFY = f"NOTIFY {CHANNEL}"


async def enqueue(session: AsyncSession, topic: str, payload: dict[str, Any], key: str) -> None:
    """Queue one message; it is sent only if the caller's transaction commits."""
    await enqueue_many(session, [(topic, payload, key)])


async def enqueue_many(session: AsyncSession, messages: Sequence[Outgoing]) -> None:
    """Queue several messages with one insert (a batch of the ingest), in the caller's transaction."""
    if not messages:
        return
    pg = await asyncpg_connection(session)
    messages = [*messages, *await _webhook_deliveries(session, messages, pg)]
    now = datetime.now(UTC)
    if pg is not None:
        await pg.execute(
            _PG_ENQUEUE,
            [topic for topic, _, _ in messages],
            [msgspec.json.encode(payload).decode() for _, payload, _ in messages],
            [key for _, _, key in messages],
            now,
        )
    else:
        await session.execute(
            insert(table_of(m.OutboxMessage)),
            [
                {"topic": topic, "payload": payload, "key": key, "created_at": now, "attempts": 0}
                for topic, payload, key in messages
            ],
        )
    if pg is not None:
        # Delivered at commit, and only then: the bridge wakes for rows it can already see.
        await pg.execute(_PG_NOTIFY)
    elif session.get_bind().dialect.name == "postgresql":
        await session.execute(text(_PG_NOTIFY))


async def _webhook_deliveries(session: AsyncSession, messages: Sequence[Outgoing], pg: Any | None) -> list[Outgoing]:
    """One delivery per active webhook that wants a region alert among ``messages``."""
    events = [
        payload
        for topic, payload, _ in messages
        if topic.startswith(ALERTS_PREFIX) and payload.get("type") in WEBHOOK_EVENTS
    ]
    if not events:
        return []
    # Read in this transaction, never cached: a webhook added or disabled counts from its commit on.
    hooks: list[tuple[Any, list[str], str | None]]
    if pg is not None:
        hooks = [(r[0], msgspec.json.decode(r[1]), r[2]) for r in await pg.fetch(_PG_WEBHOOKS)]
    else:
        rows = await session.execute(select(m.Webhook.id, m.Webhook.event_types, m.Webhook.region).where(m.Webhook.active))
        hooks = [(r.id, r.event_types, r.region) for r in rows]
    return [
        (f"{WEBHOOK_PREFIX}{hook_id}", event, str(hook_id))
        for event in events
        for hook_id, event_types, region in hooks
        if event["type"] in event_types and region in (None, event.get("region"))
    ]


@dataclass(frozen=True)
class Pending:
    """An unpublished message as the bridge sends it."""

    id: int
    topic: str
    payload: dict[str, Any]
    attempts: int = 0


@dataclass(frozen=True)
class Backlog:
    """How many messages wait, and since when."""

    count: int
    oldest: datetime | None


# The bridge on PostgreSQL, on its own connection (the one holding its lock): fixed statements,
# the payload as JSON text decoded by msgspec, any number of ids in one parameter.
_PG_PENDING = """
SELECT id, topic, payload::text FROM outbox_message
WHERE published_at IS NULL AND topic NOT LIKE 'webhook:%' ORDER BY id LIMIT $1
"""
_PG_PUBLISHED = """
UPDATE outbox_message SET published_at = $2, attempts = attempts + 1
WHERE id = ANY($1::bigint[]) AND published_at IS NULL
"""
_PG_FAILED = "UPDATE outbox_message SET attempts = attempts + 1, last_error = $2 WHERE id = $1"


async def pending_on(conn: Any, limit: int) -> list[Pending]:
    """:func:`pending` on the bridge's asyncpg connection."""
    return [Pending(id=r[0], topic=r[1], payload=_decode(r[2])) for r in await conn.fetch(_PG_PENDING, limit)]


async def settle_on(conn: Any, ids: Sequence[int], now: datetime, failure: tuple[int, str] | None) -> None:
    """:func:`mark_published` of ``ids`` and :func:`mark_failed` of ``failure``, in one transaction."""
    async with conn.transaction():
        if ids:
            await conn.execute(_PG_PUBLISHED, list(ids), now)
        if failure is not None:
            await conn.execute(_PG_FAILED, failure[0], failure[1][:500])


_decode = msgspec.json.Decoder(dict[str, Any]).decode


async def pending(session: AsyncSession, limit: int) -> list[Pending]:
    """The oldest unpublished MQTT messages, in the order they were written (webhook rows go their own way)."""
    rows = await session.execute(
        select(m.OutboxMessage.id, m.OutboxMessage.topic, m.OutboxMessage.payload)
        .where(m.OutboxMessage.published_at.is_(None), ~m.OutboxMessage.topic.startswith(WEBHOOK_PREFIX))
        .order_by(m.OutboxMessage.id)
        .limit(limit)
    )
    return [Pending(id=row.id, topic=row.topic, payload=row.payload) for row in rows]


async def pending_webhooks(session: AsyncSession, limit: int) -> list[Pending]:
    """The oldest unpublished webhook deliveries, in the order they were written."""
    rows = await session.execute(
        select(m.OutboxMessage.id, m.OutboxMessage.topic, m.OutboxMessage.payload, m.OutboxMessage.attempts)
        .where(m.OutboxMessage.published_at.is_(None), m.OutboxMessage.topic.startswith(WEBHOOK_PREFIX))
        .order_by(m.OutboxMessage.id)
        .limit(limit)
    )
    return [Pending(id=row.id, topic=row.topic, payload=row.payload, attempts=row.attempts) for row in rows]


async def webhook_secrets(session: AsyncSession, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """``{webhook id: (url, secret)}`` of the webhooks that still exist and are active."""
    if not ids:
        return {}
    hooks = await session.scalars(
        select(m.Webhook).where(m.Webhook.id.in_([uuid.UUID(i) for i in ids]), m.Webhook.active)
    )
    return {str(hook.id): (hook.url, hook.secret) for hook in hooks}


async def give_up(session: AsyncSession, message_id: int, error: str, now: datetime) -> None:
    """Stop retrying a delivery: it leaves the backlog with its last error kept."""
    await session.execute(
        update(m.OutboxMessage)
        .where(m.OutboxMessage.id == message_id)
        .values(published_at=now, attempts=m.OutboxMessage.attempts + 1, last_error=f"gave up: {error}"[:500])
    )


async def mark_published(session: AsyncSession, ids: Sequence[int], now: datetime) -> None:
    """Record the broker's PUBACK for ``ids``."""
    if ids:
        await session.execute(
            update(m.OutboxMessage)
            .where(m.OutboxMessage.id.in_(ids), m.OutboxMessage.published_at.is_(None))
            .values(published_at=now, attempts=m.OutboxMessage.attempts + 1)
        )


async def mark_failed(session: AsyncSession, message_id: int, error: str) -> None:
    """Count a failed attempt; the message stays first in line."""
    await session.execute(
        update(m.OutboxMessage)
        .where(m.OutboxMessage.id == message_id)
        .values(attempts=m.OutboxMessage.attempts + 1, last_error=error[:500])
    )


async def backlog(session: AsyncSession) -> Backlog:
    """Unpublished MQTT messages and the creation time of the oldest (a dead webhook is no MQTT backlog)."""
    row = (
        await session.execute(
            select(func.count(), func.min(m.OutboxMessage.created_at)).where(
                m.OutboxMessage.published_at.is_(None), ~m.OutboxMessage.topic.startswith(WEBHOOK_PREFIX)
            )
        )
    ).one()
    oldest = row[1]
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return Backlog(count=int(row[0]), oldest=oldest)


async def purge_published(session: AsyncSession, before: datetime) -> int:
    """Delete messages published before ``before``; returns how many."""
    result = await session.execute(
        delete(m.OutboxMessage).where(m.OutboxMessage.published_at.is_not(None), m.OutboxMessage.published_at < before)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
