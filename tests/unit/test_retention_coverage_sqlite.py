"""Retention and coverage on the embedded default, SQLite: the same SQL rules hold there.

The PostgreSQL behaviour is proven in ``tests/integration``; these check the parts whose SQL
differs by dialect (the JSON rewrite of event payloads, rounding, floor, the upsert) on a
migrated SQLite file.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.coverage.service import compute_coverage
from naboom.db import models as m
from naboom.db.config import database_config, upgrade
from naboom.retention.service import RetentionPolicy, apply_retention
from naboom.settings import Settings

DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"NABOOM_VAR_DIR": str(tmp_path), "NABOOM_SECRET_KEY": "k"})


@pytest.fixture
def migrated(settings: Settings) -> SQLAlchemyAsyncConfig:
    config = database_config(settings)
    upgrade(config)  # the real migrations, as `naboom migrate` runs them
    return config


@pytest.fixture
async def session(migrated: SQLAlchemyAsyncConfig) -> AsyncIterator[AsyncSession]:
    async with migrated.get_session() as session:
        yield session
    await migrated.get_engine().dispose()


async def _incident(session: AsyncSession, status: str, closed_at: datetime | None, received_at: datetime) -> uuid.UUID:
    incident = m.Incident(
        region="A", source="mqtt", device_pid=None, message="SOS", lat=-24.53678, lng=28.71234, accuracy=12.5,
        device_ts=received_at, received_at=received_at, status=status, closed_at=closed_at,
    )
    session.add(incident)
    await session.flush()
    session.add(
        # Recent (a note after closing, say): only location rules apply to it, not the event period.
        m.IncidentEvent(incident_id=incident.id, type="sos", actor="device:x", created_at=datetime.now(UTC) - DAY,
                        payload={"msg": "SOS", "lat": -24.53678, "lng": 28.71234, "acc": 12.5})
    )
    await session.flush()
    return incident.id


async def test_retention_rules_hold_on_sqlite(session: AsyncSession, settings: Settings) -> None:
    now = datetime.now(UTC)
    policy = RetentionPolicy.from_settings(settings)
    old = now - 3000 * DAY
    doomed = await _incident(session, "resolved", now - policy.incidents - MINUTE, old)
    removed = await _incident(session, "cancelled", now - policy.remove_locations - MINUTE, old)
    coarse = await _incident(session, "resolved", now - policy.coarsen_locations - MINUTE, old)
    still_open = await _incident(session, "open", None, old)
    await session.commit()

    report = await apply_retention(session, now, policy)
    await session.commit()

    assert (report.incidents, report.locations_removed, report.locations_coarsened) == (1, 1, 1)
    assert (report.event_locations_removed, report.event_locations_coarsened) == (1, 1)
    assert await session.get(m.Incident, doomed) is None
    session.expire_all()
    events = {e.incident_id: e.payload for e in await session.scalars(select(m.IncidentEvent))}
    assert set(events) == {removed, coarse, still_open}
    assert (events[removed]["lat"], events[removed]["lng"], events[removed]["acc"]) == (None, None, None)
    assert (events[coarse]["lat"], events[coarse]["lng"], events[coarse]["acc"]) == (-24.54, 28.71, 1000)
    assert events[still_open]["lat"] == -24.53678
    located = {i.id: (i.lat, i.lng, i.accuracy, i.location_precision) for i in await session.scalars(select(m.Incident))}
    assert located == {
        removed: (None, None, None, "removed"),
        coarse: (-24.54, 28.71, 1000.0, "coarse"),
        still_open: (-24.53678, 28.71234, 12.5, "exact"),
    }


async def test_coverage_floors_negative_coordinates_and_replaces_on_sqlite(session: AsyncSession) -> None:
    day = date(2025, 3, 10)
    at = datetime(2025, 3, 10, 12, tzinfo=UTC)
    session.add(m.Region(code="A", name="A"))
    vehicle = m.Vehicle(callsign="V1", region="A", token_hash="h")
    session.add(vehicle)
    await session.flush()
    for lat, lng in [(-0.25, -0.25), (0.25, 0.25), (-0.5, -1.0), (-0.5000001, -1.0000001)]:
        session.add(m.VehiclePing(vehicle_id=vehicle.id, lat=lat, lng=lng, ts=at, received_at=at))
    await session.flush()

    first = await compute_coverage(session, "A", day, 0.5, at)
    assert [(c.lat, c.lng, c.pings) for c in first.cells] == [(-1.0, -1.5, 1), (-0.5, -1.0, 1), (-0.5, -0.5, 1), (0.0, 0.0, 1)]
    session.add(m.VehiclePing(vehicle_id=vehicle.id, lat=0.3, lng=0.3, ts=at, received_at=at))
    await session.flush()
    second = await compute_coverage(session, "A", day, 0.5, at + MINUTE)
    await session.commit()

    assert (second.pings, second.vehicles) == (5, 1)
    assert second.cells[-1].pings == 2
    assert await session.scalar(select(func.count()).select_from(m.CoverageReport)) == 1
    stored = await session.scalar(select(m.CoverageReport))
    assert stored is not None and stored.pings == 5
