"""Retention (POPIA): delete or de-identify what is older than its period, in a few set-based statements.

Each kind has its own period; every rule is one bulk ``DELETE`` or ``UPDATE`` whose ``WHERE``
starts from an indexed time column, the same SQL on PostgreSQL and SQLite (only the JSON
rewrite of event payloads differs). Incidents still being handled (open, acknowledged,
dispatched) are never touched, however old: only closed ones (resolved, cancelled) age, and
their age is counted from when they were closed.

- Closed incidents older than the incident period go, with their timeline, escalations and
  outbound messages (an SMS describes the incident: its place and time).
- Timeline events older than the event period go, for closed incidents only.
- Outbound messages older than the message period are deleted, attempts included: the
  idempotency key and the body both name the recipient, so nothing smaller de-identifies them.
- Vehicle pings, ingest rejections and de-duplication receipts older than their periods go.
- Locations of closed incidents are coarsened (about 1 km) after one period and removed after
  another, on the incident and in its events' payloads (the SOS events carry ``lat/lng/acc``).

The caller commits (the task, at its boundary); one audit entry records what a run did.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import (
    ColumnElement,
    Delete,
    Float,
    Numeric,
    Select,
    Table,
    Update,
    case,
    cast,
    delete,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.audit.service import record
from naboom.db import models as m
from naboom.db.inserts import table_of
from naboom.retention.schemas import RetentionPeriods, RetentionReport, RetentionRun, RetentionStatus
from naboom.settings import Settings

AUDIT_ACTION = "retention.run"
CLOSED = (m.IncidentStatus.RESOLVED, m.IncidentStatus.CANCELLED)
# A coarse location is good to about a kilometre: two decimals of a degree, and an accuracy
# that says so (an exact fix of 5 m rounded to 0.01° is not accurate to 5 m any more).
COARSE_DECIMALS = 2
COARSE_ACCURACY_M = 1000.0

# Event payloads are JSON; rewriting keys in place is dialect-specific (jsonb || vs json_set).
_COARSEN_PAYLOAD = {
    "postgresql": (
        "payload || jsonb_build_object("
        "'lat', round((payload->>'lat')::numeric, 2)::float8, "
        "'lng', round((payload->>'lng')::numeric, 2)::float8, "
        "'acc', greatest(coalesce((payload->>'acc')::float8, 0), 1000))"
    ),
    "sqlite": (
        "json_set(payload, "
        "'$.lat', round(json_extract(payload, '$.lat'), 2), "
        "'$.lng', round(json_extract(payload, '$.lng'), 2), "
        "'$.acc', max(coalesce(json_extract(payload, '$.acc'), 0), 1000))"
    ),
}
_REMOVE_PAYLOAD = {
    "postgresql": """payload || '{"lat": null, "lng": null, "acc": null}'::jsonb""",
    "sqlite": "json_set(payload, '$.lat', NULL, '$.lng', NULL, '$.acc', NULL)",
}


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long each kind of record is kept."""

    incidents: timedelta
    events: timedelta
    messages: timedelta
    vehicle_pings: timedelta
    rejections: timedelta
    receipts: timedelta
    coarsen_locations: timedelta
    remove_locations: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        """The configured periods; receipts never shorter than the de-duplication window allows."""
        # A receipt is what refuses a replayed {pid}:{nonce}. The ingest accepts a message whose ts
        # is up to the de-duplication window old (and up to the future skew ahead of the clock), so
        # a receipt must outlive window + skew from when it was received: removed sooner, a captured
        # message replayed after that would find no record and be accepted a second time.
        replay_horizon = timedelta(seconds=settings.dedup_window_seconds + settings.future_skew_seconds)
        return cls(
            incidents=timedelta(days=settings.retention_incident_days),
            events=timedelta(days=settings.retention_event_days),
            messages=timedelta(days=settings.retention_message_days),
            vehicle_pings=timedelta(days=settings.retention_vehicle_ping_days),
            rejections=timedelta(days=settings.retention_rejection_days),
            receipts=max(timedelta(days=settings.retention_receipt_days), replay_horizon),
            coarsen_locations=timedelta(days=settings.location_coarsen_days),
            remove_locations=timedelta(days=settings.location_remove_days),
        )

    def periods(self) -> RetentionPeriods:
        """The periods as the admin API shows them."""
        return RetentionPeriods(
            incident_days=_days(self.incidents),
            event_days=_days(self.events),
            message_days=_days(self.messages),
            vehicle_ping_days=_days(self.vehicle_pings),
            rejection_days=_days(self.rejections),
            receipt_seconds=int(self.receipts.total_seconds()),
            location_coarsen_days=_days(self.coarsen_locations),
            location_remove_days=_days(self.remove_locations),
        )


def _days(period: timedelta) -> float:
    return period.total_seconds() / 86400


async def apply_retention(session: AsyncSession, now: datetime, policy: RetentionPolicy) -> RetentionReport:
    """Apply every rule as of ``now``; returns what was removed or changed, per kind (the caller commits)."""
    dialect = session.get_bind().dialect.name
    incident, event = table_of(m.Incident), table_of(m.IncidentEvent)
    message = table_of(m.OutboundMessage)

    async def count(statement: Delete | Update) -> int:
        result: Any = await session.execute(statement)
        return int(result.rowcount or 0)

    def closed_before(cutoff: datetime) -> list[ColumnElement[bool]]:
        return [incident.c.status.in_(CLOSED), incident.c.closed_at < cutoff]

    # Closed incidents past their period, with everything that describes them. Events and
    # escalations would cascade; events are deleted here so the report counts them.
    doomed = select(incident.c.id).where(*closed_before(now - policy.incidents))
    messages = await count(delete(message).where(message.c.incident_id.in_(doomed)))
    events = await count(delete(event).where(event.c.incident_id.in_(doomed)))
    incidents = await count(delete(incident).where(*closed_before(now - policy.incidents)))

    # A timeline is only thinned once its incident is closed: an open incident keeps all of it.
    closed = select(incident.c.id).where(incident.c.status.in_(CLOSED))
    events += await count(
        delete(event).where(event.c.created_at < now - policy.events, event.c.incident_id.in_(closed))
    )
    # Every status listed, so the (status, created_at) index serves the range.
    messages += await count(
        delete(message).where(
            message.c.status.in_([s.value for s in m.MessageStatus]), message.c.created_at < now - policy.messages
        )
    )
    ping, rejection, receipt = table_of(m.VehiclePing), table_of(m.IngestRejection), table_of(m.SosReceipt)
    vehicle_pings = await count(delete(ping).where(ping.c.received_at < now - policy.vehicle_pings))
    rejections = await count(delete(rejection).where(rejection.c.received_at < now - policy.rejections))
    receipts = await count(delete(receipt).where(receipt.c.received_at < now - policy.receipts))

    # Locations: removal first, so a location past both periods is removed, not coarsened too.
    # Events are rewritten before their incidents, while the incident still says how precise it is.
    to_remove = [*closed_before(now - policy.remove_locations), incident.c.location_precision != "removed"]
    event_locations_removed = await count(
        _rewrite_payloads(event, select(incident.c.id).where(*to_remove), _REMOVE_PAYLOAD[dialect])
    )
    locations_removed = await count(
        update(incident)
        .where(*to_remove)
        .values(lat=None, lng=None, accuracy=None, location_precision="removed", updated_at=now)
    )
    to_coarsen = [*closed_before(now - policy.coarsen_locations), incident.c.location_precision == "exact"]
    event_locations_coarsened = await count(
        _rewrite_payloads(event, select(incident.c.id).where(*to_coarsen), _COARSEN_PAYLOAD[dialect])
    )
    locations_coarsened = await count(
        update(incident)
        .where(*to_coarsen)
        .values(
            lat=_rounded(incident.c.lat),
            lng=_rounded(incident.c.lng),
            accuracy=case(
                (incident.c.lat.is_(None), incident.c.accuracy),
                (incident.c.accuracy >= COARSE_ACCURACY_M, incident.c.accuracy),
                else_=COARSE_ACCURACY_M,
            ),
            location_precision="coarse",
            updated_at=now,
        )
    )

    report = RetentionReport(
        as_of=now,
        incidents=incidents,
        events=events,
        messages=messages,
        vehicle_pings=vehicle_pings,
        rejections=rejections,
        receipts=receipts,
        locations_coarsened=locations_coarsened,
        locations_removed=locations_removed,
        event_locations_coarsened=event_locations_coarsened,
        event_locations_removed=event_locations_removed,
    )
    record(session, None, AUDIT_ACTION, "retention", None, msgspec.to_builtins(report))
    return report


def _rounded(column: ColumnElement[Any]) -> ColumnElement[Any]:
    # PostgreSQL rounds to a number of decimals only on numeric, not on double precision.
    return cast(func.round(cast(column, Numeric), COARSE_DECIMALS), Float)


def _rewrite_payloads(event: Table, incidents: Select[Any], expression: str) -> Update:
    """Set located events' payloads of ``incidents`` to ``expression`` (SQL over ``payload``)."""
    located = event.c.payload["lat"].as_float().is_not(None)
    return (
        update(event)
        .where(event.c.incident_id.in_(incidents), located)
        .values(payload=literal_column(expression))
    )


async def status(session: AsyncSession, policy: RetentionPolicy) -> RetentionStatus:
    """The configured periods and the newest run's report, if any run was recorded."""
    entry = await session.scalar(
        select(m.AuditEntry).where(m.AuditEntry.action == AUDIT_ACTION).order_by(m.AuditEntry.id.desc()).limit(1)
    )
    last_run = None
    if entry is not None:
        last_run = RetentionRun(at=entry.at, report=msgspec.convert(entry.detail, RetentionReport, strict=False))
    return RetentionStatus(periods=policy.periods(), last_run=last_run)
