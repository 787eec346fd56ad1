"""Retention (POPIA) on real PostgreSQL: exactly what is older than each period goes.

Rows are written with explicit timestamps one minute either side of each boundary, relative to
an explicit ``now``; the run must remove (or coarsen, or strip) the older one and leave the
younger one as it was. The daily task is also driven once through a real ``naboom worker``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from naboom.background.broker import open_work
from naboom.db import models as m
from naboom.retention.service import RetentionPolicy, apply_retention
from naboom.retention.tasks import apply_retention as apply_retention_task
from naboom.settings import Settings
from tests.support import Server, Stack, unique_region, wait_for, worker

MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)
# Different periods for every kind, so each boundary is its own. Receipts ask for one day, which
# the policy must raise to the de-duplication window (7 days) plus the future skew (300 s).
PERIODS = {
    "NABOOM_RETENTION_INCIDENT_DAYS": "40",
    "NABOOM_RETENTION_EVENT_DAYS": "20",
    "NABOOM_RETENTION_MESSAGE_DAYS": "15",
    "NABOOM_RETENTION_VEHICLE_PING_DAYS": "10",
    "NABOOM_RETENTION_REJECTION_DAYS": "5",
    "NABOOM_RETENTION_RECEIPT_DAYS": "1",
    "NABOOM_LOCATION_COARSEN_DAYS": "25",
    "NABOOM_LOCATION_REMOVE_DAYS": "30",
    "NABOOM_DEDUP_WINDOW_SECONDS": str(7 * 86400),
    "NABOOM_FUTURE_SKEW_SECONDS": "300",
}
REPLAY_HORIZON = timedelta(days=7, seconds=300)
LAT, LNG, ACC = -24.53678, 28.71234, 12.5
ZERO = {
    "incidents": 0, "events": 0, "messages": 0, "vehicle_pings": 0, "rejections": 0, "receipts": 0,
    "locations_coarsened": 0, "locations_removed": 0, "event_locations_coarsened": 0, "event_locations_removed": 0,
}


@pytest.fixture(scope="module")
async def sessions(real_stack: Stack) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the stack's database."""
    assert real_stack.database_url is not None
    engine = create_async_engine(real_stack.database_url)
    try:
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()


@pytest.fixture(autouse=True)
async def empty(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Each test starts without retention's rows: a run's counts must be exactly its own test's."""
    async with sessions() as session:
        await session.execute(
            text(
                "TRUNCATE incident, incident_event, incident_escalation, escalation_rule, outbound_message, "
                "sms_attempt, vehicle_ping, ingest_rejection, sos_receipt, audit_entry"
            )
        )
        await session.commit()


@pytest.fixture(scope="module")
def policy(real_stack: Stack) -> RetentionPolicy:
    return RetentionPolicy.from_settings(Settings.from_env({**real_stack.env(), **PERIODS}))


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Rows:
    """Writes rows with explicit timestamps."""

    def __init__(self, session: AsyncSession, region: str) -> None:
        self.session = session
        self.region = region

    async def incident(
        self,
        status: str,
        *,
        received_at: datetime,
        closed_at: datetime | None = None,
        acc: float | None = ACC,
    ) -> uuid.UUID:
        incident = m.Incident(
            region=self.region, source="http", device_pid=None, message="SOS", lat=LAT, lng=LNG, accuracy=acc,
            device_ts=received_at, received_at=received_at, status=status, closed_at=closed_at,
            closed_by="op" if closed_at else None,
        )
        self.session.add(incident)
        await self.session.flush()
        return incident.id

    async def event(self, incident_id: uuid.UUID, at: datetime, *, located: bool = False) -> int:
        payload: dict[str, Any] = {"nonce": uuid.uuid4().hex, "msg": "SOS", "lat": LAT, "lng": LNG, "acc": ACC} if located else {"note": "on scene"}
        event = m.IncidentEvent(incident_id=incident_id, type="sos" if located else "note", payload=payload,
                                actor="device:x", created_at=at)
        self.session.add(event)
        await self.session.flush()
        return event.id

    async def message(self, created_at: datetime, incident_id: uuid.UUID | None = None) -> uuid.UUID:
        recipient = f"+2782{uuid.uuid4().int % 10**7:07d}"
        message = m.OutboundMessage(
            key=f"{incident_id}:alert:{recipient}", incident_id=incident_id, region=self.region, step="alert",
            recipient=recipient, body="SOS at -24.53678,28.71234", status="delivered", attempts=1,
            created_at=created_at, updated_at=created_at,
        )
        self.session.add(message)
        await self.session.flush()
        self.session.add(m.SmsAttempt(message_id=message.id, number=1, provider="fake", started_at=created_at,
                                      finished_at=created_at, outcome="accepted"))
        return message.id

    async def vehicle(self) -> uuid.UUID:
        vehicle = m.Vehicle(callsign=f"RT-{uuid.uuid4().hex[:8]}", region=self.region, token_hash=uuid.uuid4().hex)
        self.session.add(vehicle)
        await self.session.flush()
        return vehicle.id

    async def ping(self, vehicle_id: uuid.UUID, received_at: datetime) -> int:
        ping = m.VehiclePing(vehicle_id=vehicle_id, lat=LAT, lng=LNG, ts=received_at, received_at=received_at)
        self.session.add(ping)
        await self.session.flush()
        return ping.id

    async def rejection(self, received_at: datetime) -> int:
        row = m.IngestRejection(received_at=received_at, transport="mqtt", pid="btn-x", reason="bad_signature",
                                detail="signature does not match", size=120)
        self.session.add(row)
        await self.session.flush()
        return row.id

    async def receipt(self, received_at: datetime) -> str:
        key = f"btn-x:{uuid.uuid4().hex}"
        self.session.add(m.SosReceipt(key=key, digest="0" * 64, incident_id=uuid.uuid4(), received_at=received_at))
        await self.session.flush()
        return key


async def _region(session: AsyncSession) -> str:
    code = unique_region()
    session.add(m.Region(code=code, name=code))
    await session.flush()
    return code


async def _exists(session: AsyncSession, model: Any, key: Any) -> bool:
    return await session.get(model, key, populate_existing=True) is not None


async def _count(session: AsyncSession, model: Any, *where: Any) -> int:
    return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_each_kind_older_than_its_period_goes_and_the_younger_stays(
    sessions: async_sessionmaker[AsyncSession], policy: RetentionPolicy
) -> None:
    now = _now()
    async with sessions() as session:
        rows = Rows(session, await _region(session))
        # Incidents past the incident period go with their timeline, escalations and messages.
        doomed = await rows.incident("resolved", received_at=now - 60 * DAY, closed_at=now - 40 * DAY - MINUTE)
        doomed_events = [await rows.event(doomed, now - 60 * DAY, located=True), await rows.event(doomed, now - 40 * DAY)]
        doomed_message = await rows.message(now - DAY, doomed)
        rule = m.EscalationRule(region=rows.region, name="r", levels=[])
        session.add(rule)
        await session.flush()
        session.add(m.IncidentEscalation(incident_id=doomed, rule_id=rule.id, level=0, fired_at=now - 59 * DAY))
        # Just inside the incident period, but past the removal period: kept, location removed.
        removed_young = await rows.incident("cancelled", received_at=now - 60 * DAY, closed_at=now - 40 * DAY + MINUTE)
        removed_young_sos = await rows.event(removed_young, now - 19 * DAY, located=True)
        removed_old = await rows.incident("resolved", received_at=now - 60 * DAY, closed_at=now - 30 * DAY - MINUTE)
        # Either side of the removal boundary past the coarsening one: coarsened.
        coarse_young = await rows.incident("resolved", received_at=now - 60 * DAY, closed_at=now - 30 * DAY + MINUTE)
        coarse_young_sos = await rows.event(coarse_young, now - 19 * DAY, located=True)
        coarse_wide = await rows.incident("resolved", received_at=now - 60 * DAY, closed_at=now - 25 * DAY - MINUTE,
                                          acc=1500.0)
        # Just inside the coarsening period: exact; its timeline loses only what is past the event period.
        exact = await rows.incident("resolved", received_at=now - 60 * DAY, closed_at=now - 25 * DAY + MINUTE)
        event_old = await rows.event(exact, now - 20 * DAY - MINUTE, located=True)
        event_young = await rows.event(exact, now - 20 * DAY + MINUTE, located=True)
        message_old, message_young = await rows.message(now - 15 * DAY - MINUTE), await rows.message(now - 15 * DAY + MINUTE)
        vehicle = await rows.vehicle()
        ping_old, ping_young = await rows.ping(vehicle, now - 10 * DAY - MINUTE), await rows.ping(vehicle, now - 10 * DAY + MINUTE)
        rejection_old = await rows.rejection(now - 5 * DAY - MINUTE)
        rejection_young = await rows.rejection(now - 5 * DAY + MINUTE)
        # Receipts: the 1-day period is raised to the replay horizon; the young one is 7 days old.
        receipt_old = await rows.receipt(now - REPLAY_HORIZON - MINUTE)
        receipt_young = await rows.receipt(now - REPLAY_HORIZON + MINUTE)
        await session.commit()

    async with sessions() as session:
        report = await apply_retention(session, now, policy)
        await session.commit()

    assert report.as_of == now
    assert {k: getattr(report, k) for k in ZERO} == {
        "incidents": 1,
        "events": 3,  # the deleted incident's two, and one past the event period
        "messages": 2,  # the deleted incident's, and one past the message period
        "vehicle_pings": 1,
        "rejections": 1,
        "receipts": 1,
        "locations_coarsened": 2,
        "locations_removed": 2,
        "event_locations_coarsened": 1,
        "event_locations_removed": 1,
    }
    async with sessions() as session:
        assert not await _exists(session, m.Incident, doomed)
        for event_id in doomed_events:
            assert not await _exists(session, m.IncidentEvent, event_id)
        assert not await _exists(session, m.OutboundMessage, doomed_message)
        assert await _count(session, m.IncidentEscalation, m.IncidentEscalation.incident_id == doomed) == 0

        for incident_id in (removed_young, removed_old):
            incident = await session.get(m.Incident, incident_id)
            assert incident is not None
            assert (incident.lat, incident.lng, incident.accuracy, incident.location_precision) == (None, None, None, "removed")
        removed_payload = (await session.get(m.IncidentEvent, removed_young_sos)).payload  # type: ignore[union-attr]
        assert (removed_payload["lat"], removed_payload["lng"], removed_payload["acc"]) == (None, None, None)
        assert removed_payload["msg"] == "SOS"

        incident = await session.get(m.Incident, coarse_young)
        assert incident is not None
        assert (incident.lat, incident.lng, incident.accuracy, incident.location_precision) == (-24.54, 28.71, 1000.0, "coarse")
        coarse_payload = (await session.get(m.IncidentEvent, coarse_young_sos)).payload  # type: ignore[union-attr]
        assert (coarse_payload["lat"], coarse_payload["lng"], coarse_payload["acc"]) == (-24.54, 28.71, 1000)
        incident = await session.get(m.Incident, coarse_wide)
        assert incident is not None
        assert (incident.lat, incident.lng, incident.accuracy, incident.location_precision) == (-24.54, 28.71, 1500.0, "coarse")

        incident = await session.get(m.Incident, exact)
        assert incident is not None
        assert (incident.lat, incident.lng, incident.accuracy, incident.location_precision) == (LAT, LNG, ACC, "exact")
        assert not await _exists(session, m.IncidentEvent, event_old)
        young_payload = (await session.get(m.IncidentEvent, event_young)).payload  # type: ignore[union-attr]
        assert (young_payload["lat"], young_payload["lng"], young_payload["acc"]) == (LAT, LNG, ACC)

        assert not await _exists(session, m.OutboundMessage, message_old)
        assert await _count(session, m.SmsAttempt, m.SmsAttempt.message_id == message_old) == 0
        assert await _exists(session, m.OutboundMessage, message_young)
        assert not await _exists(session, m.VehiclePing, ping_old)
        assert await _exists(session, m.VehiclePing, ping_young)
        assert not await _exists(session, m.IngestRejection, rejection_old)
        assert await _exists(session, m.IngestRejection, rejection_young)
        assert not await _exists(session, m.SosReceipt, receipt_old)
        assert await _exists(session, m.SosReceipt, receipt_young)

        audit = (await session.scalars(select(m.AuditEntry).where(m.AuditEntry.action == "retention.run"))).all()
        assert [(a.actor, a.role) for a in audit] == [("system", "system")]
        assert {k: audit[0].detail[k] for k in ZERO} == {k: getattr(report, k) for k in ZERO}

    # What is left is within its periods: a second run at the same moment finds nothing.
    async with sessions() as session:
        again = await apply_retention(session, now, policy)
        await session.commit()
    assert {k: getattr(again, k) for k in ZERO} == ZERO


async def test_incidents_still_being_handled_are_never_touched_however_old(
    sessions: async_sessionmaker[AsyncSession], policy: RetentionPolicy
) -> None:
    now = _now()
    ancient = now - 3000 * DAY
    async with sessions() as session:
        rows = Rows(session, await _region(session))
        handled = {
            await rows.incident("open", received_at=ancient),
            await rows.incident("acknowledged", received_at=ancient),
            # A closing time on an incident that is not closed does not make it closed.
            await rows.incident("dispatched", received_at=ancient, closed_at=ancient),
        }
        events = [await rows.event(incident_id, ancient, located=True) for incident_id in sorted(handled)]
        await session.commit()

    async with sessions() as session:
        report = await apply_retention(session, now, policy)
        await session.commit()

    assert {k: getattr(report, k) for k in ZERO} == ZERO
    async with sessions() as session:
        for incident_id in handled:
            incident = await session.get(m.Incident, incident_id)
            assert incident is not None
            assert (incident.lat, incident.lng, incident.accuracy, incident.location_precision) == (LAT, LNG, ACC, "exact")
        for event_id in events:
            event = await session.get(m.IncidentEvent, event_id)
            assert event is not None and (event.payload["lat"], event.payload["acc"]) == (LAT, ACC)


def test_receipts_are_kept_at_least_the_dedup_window_plus_the_future_skew(real_stack: Stack) -> None:
    short = Settings.from_env({**real_stack.env(), **PERIODS})
    assert RetentionPolicy.from_settings(short).receipts == REPLAY_HORIZON
    long = Settings.from_env({**real_stack.env(), **PERIODS, "NABOOM_RETENTION_RECEIPT_DAYS": "30"})
    assert RetentionPolicy.from_settings(long).receipts == 30 * DAY


async def test_the_daily_task_runs_on_a_general_worker_and_the_admin_sees_its_report(
    server: Server, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    stack = server.stack
    # A month ahead of the wall clock: only a run that uses the ``now`` it was given removes the old ping.
    now = _now() + 30 * DAY
    ping_days = Settings.from_env(stack.env()).retention_vehicle_ping_days
    async with sessions() as session:
        rows = Rows(session, await _region(session))
        vehicle = await rows.vehicle()
        old = await rows.ping(vehicle, now - ping_days * DAY - MINUTE)
        young = await rows.ping(vehicle, now - ping_days * DAY + MINUTE)
        await session.commit()

    general = worker(stack, tmp_path / "worker.log", "general")
    await asyncio.to_thread(general.start)  # it waits for the worker's ready line with its own loop
    try:
        async with open_work(Settings.from_env(stack.env())) as work:
            await work.tasks.kick(apply_retention_task, now=now.isoformat())

        async def old_ping_gone() -> bool:
            async with sessions() as session:
                return not await _exists(session, m.VehiclePing, old)

        await wait_for(old_ping_gone, timeout=30, what="the worker to remove the old ping")
    finally:
        general.stop()
    async with sessions() as session:
        assert await _exists(session, m.VehiclePing, young)

    admin = stack.admin()
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
        r = await client.get("/api/system/retention", headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["periods"]["vehicle_ping_days"] == ping_days
    assert body["periods"]["receipt_seconds"] == max(
        Settings.from_env(stack.env()).retention_receipt_days * 86400, 7 * 86400 + 300
    )
    report = body["last_run"]["report"]
    assert datetime.fromisoformat(report["as_of"]) == now
    assert report["vehicle_pings"] == 1
