"""Alerting responders of new incidents, and the outbox sweep that catches what a lost kick missed."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.db import models as m
from naboom.notify.service import active_contacts, queue_messages
from naboom.notify.template import alert_body
from naboom.settings import Settings

log = logging.getLogger(__name__)

NEW_INCIDENT_STEP = "new"
# An alarm closed before its alert went out needs nobody woken up.
_CLOSED = (m.IncidentStatus.RESOLVED, m.IncidentStatus.CANCELLED)
# The sweep looks this far back for incidents never alerted, and leaves younger ones to the kick.
SWEEP_INCIDENTS_WITHIN = timedelta(hours=24)
SWEEP_INCIDENT_GRACE = timedelta(seconds=30)
SWEEP_BATCH = 500


def parse_ids(values: Iterable[str]) -> list[uuid.UUID]:
    """The valid UUIDs among ``values`` (a malformed one is logged and skipped)."""
    ids = []
    for value in values:
        try:
            ids.append(uuid.UUID(str(value)))
        except ValueError:
            log.warning("ignoring malformed incident id %r", value)
    return ids


async def queue_incident_alerts(session: AsyncSession, incident_ids: Iterable[uuid.UUID], now: datetime) -> list[uuid.UUID]:
    """One ``new`` SMS per active responder of each incident's region; returns the ids queued now.

    Idempotent: a message per (incident, recipient) is queued once ever, so a second run (a
    retried task, the sweep) queues nothing new. Marks each incident ``alerted_at``. The caller
    commits, then kicks ``send_sms`` for each id.
    """
    queued: list[uuid.UUID] = []
    ids = sorted(set(incident_ids))
    if not ids:
        return queued
    incidents = list(
        await session.scalars(
            select(m.Incident)
            .where(m.Incident.id.in_(ids))
            .order_by(m.Incident.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )
    if missing := set(ids) - {i.id for i in incidents}:
        log.info("not alerting %d incident(s) that no longer exist", len(missing))
    regions = {
        r.code: r
        for r in await session.scalars(select(m.Region).where(m.Region.code.in_({i.region for i in incidents})))
    }
    contacts: dict[str, list[str]] = {}
    for incident in incidents:
        if incident.status not in _CLOSED:
            if incident.region not in contacts:
                contacts[incident.region] = await active_contacts(session, incident.region)
            region = regions.get(incident.region)
            body = alert_body(
                incident_id=incident.id,
                region_name=region.name if region else incident.region,
                timezone=region.timezone if region else m.DEFAULT_TIMEZONE,
                message=incident.message,
                lat=incident.lat,
                lng=incident.lng,
                accuracy=incident.accuracy,
                received_at=incident.received_at,
            )
            queued += await queue_messages(
                session,
                incident_id=incident.id,
                region=incident.region,
                step=NEW_INCIDENT_STEP,
                recipients=contacts[incident.region],
                body=body,
                now=now,
            )
        if incident.alerted_at is None:
            incident.alerted_at = now
    await session.flush()
    return queued


async def unalerted_incidents(session: AsyncSession, now: datetime) -> list[uuid.UUID]:
    """Incidents of the last day still without alerts, older than the kick needs to do its work."""
    rows = await session.scalars(
        select(m.Incident.id)
        .where(
            m.Incident.alerted_at.is_(None),
            m.Incident.received_at >= now - SWEEP_INCIDENTS_WITHIN,
            m.Incident.received_at < now - SWEEP_INCIDENT_GRACE,
        )
        .order_by(m.Incident.received_at)
        .limit(SWEEP_BATCH)
    )
    return list(rows)


def stale_after(settings: Settings) -> timedelta:
    """How long a waiting message may sit untouched before its task counts as lost.

    Longer than the longest retry backoff and than the time the task queue takes to hand a dead
    worker's task to another, so the sweep only kicks what nothing else will.
    """
    return timedelta(seconds=2 * max(settings.sms_retry_max_seconds, settings.task_idle_timeout_seconds))


async def stale_messages(session: AsyncSession, now: datetime, settings: Settings) -> list[uuid.UUID]:
    """Messages whose task was lost: waiting untouched too long, or ``sending`` past their lease."""
    S = m.MessageStatus
    rows = await session.scalars(
        select(m.OutboundMessage.id)
        .where(
            or_(
                (m.OutboundMessage.status.in_((S.QUEUED, S.RETRYING)))
                & (m.OutboundMessage.updated_at < now - stale_after(settings)),
                (m.OutboundMessage.status == S.SENDING) & (m.OutboundMessage.lease_until < now),
            )
        )
        .order_by(m.OutboundMessage.updated_at)
        .limit(SWEEP_BATCH)
    )
    return list(rows)
