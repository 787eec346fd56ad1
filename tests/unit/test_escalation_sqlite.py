"""``escalate_due`` on the embedded database (SQLite), with the clock as a plain argument."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from sqlalchemy import select

from naboom.db import models as m
from naboom.db.config import database_config, upgrade
from naboom.escalation.service import escalate_due
from naboom.settings import Settings

RECEIVED = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    var = tmp_path_factory.mktemp("escalation-sqlite")
    settings = Settings.from_env({"NABOOM_VAR_DIR": str(var), "NABOOM_SECRET_KEY": "k"})
    upgrade(database_config(settings))
    yield settings


@pytest.fixture
async def db(migrated: Settings) -> AsyncIterator[SQLAlchemyAsyncConfig]:
    config = database_config(migrated)
    yield config
    await config.get_engine().dispose()


async def _setup(db: SQLAlchemyAsyncConfig, condition: str) -> tuple[uuid.UUID, uuid.UUID]:
    region = f"ZA-{uuid.uuid4().hex[:6]}"
    async with db.get_session() as session:
        session.add(m.Region(code=region, name=region, timezone="Africa/Johannesburg"))
        await session.flush()
        incident = m.Incident(region=region, source="http", message="SOS", device_ts=RECEIVED, received_at=RECEIVED,
                              status="open", lat=None, lng=None)
        levels = [
            {"threshold_minutes": minutes, "targets": [f"+2782000{minutes:04d}"], "template": "L{level} {place}/{map} {time}"}
            for minutes in (5, 10, 15)
        ]
        rule = m.EscalationRule(region=region, name="r", condition=condition, levels=levels, active=True)
        session.add_all([incident, rule])
        await session.commit()
        return incident.id, rule.id


async def _run(db: SQLAlchemyAsyncConfig, minutes: float) -> list[int]:
    async with db.get_session() as session:
        fired = await escalate_due(session, RECEIVED + timedelta(minutes=minutes), public_url="http://x")
        await session.commit()
    return [f.level for f in fired]


async def test_levels_fire_once_in_order_and_an_open_rule_stops_on_acknowledge(db: SQLAlchemyAsyncConfig) -> None:
    incident_id, rule_id = await _setup(db, "open")
    assert await _run(db, 4.9) == []
    assert await _run(db, 5) == [1]
    assert await _run(db, 5) == []
    assert await _run(db, 12) == [2]
    async with db.get_session() as session:
        incident = await session.get_one(m.Incident, incident_id)
        incident.status = "acknowledged"
        await session.commit()
    assert await _run(db, 20) == []
    async with db.get_session() as session:
        bodies = list(await session.scalars(
            select(m.OutboundMessage.body).where(m.OutboundMessage.incident_id == incident_id).order_by(m.OutboundMessage.step)
        ))
        fired = list(await session.scalars(select(m.IncidentEscalation.level).where(
            m.IncidentEscalation.rule_id == rule_id).order_by(m.IncidentEscalation.level)))
    # 08:00 UTC is 10:00 in Johannesburg; an incident without a location says so.
    assert bodies == [f"L{n} location unknown/location unknown 01 Jun 10:00 SAST" for n in (1, 2)]
    assert fired == [1, 2]


async def test_a_late_check_fires_every_due_level_in_order_and_unresolved_goes_on_after_acknowledge(
    db: SQLAlchemyAsyncConfig,
) -> None:
    incident_id, _ = await _setup(db, "unresolved")
    assert await _run(db, 11) == [1, 2]
    async with db.get_session() as session:
        incident = await session.get_one(m.Incident, incident_id)
        incident.status = "acknowledged"
        await session.commit()
    assert await _run(db, 15) == [3]
