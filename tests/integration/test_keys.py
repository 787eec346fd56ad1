"""Device keys through the real verification path: the contract's signing vectors and key rotation.

The vectors run through ``IngestService.process`` on a migrated PostgreSQL database with the
device ``device-1234`` stored through the ORM (secrets are encrypted at rest), with ``now`` set
to each vector's ``ts`` so only the signature decides. Rotation runs against ``naboom serve``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from naboom.db import models as m
from naboom.ingest.schemas import Envelope, Reason, Verdict
from naboom.ingest.service import IngestPolicy, IngestService
from tests.integration.ingest_helpers import Admin, incidents_of, sql_literal
from tests.support import Server, Stack, in_process_sessions, psql, sos, unique_pid, unique_region

VECTOR_PID = "device-1234"
POLICY = IngestPolicy(
    dedup_window=timedelta(days=7), future_skew=timedelta(minutes=5), rejection_log_max_rows=10_000
)


@pytest.fixture
async def sessions(
    real_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """In-process sessions that encrypt and decrypt device secrets with the stack's key, like its server."""
    for key, value in real_stack.env().items():
        if key.startswith("NABOOM_"):
            monkeypatch.setenv(key, value)  # so the environment is restored afterwards
    async with in_process_sessions(real_stack) as maker:
        yield maker


async def test_every_signing_vector_is_accepted_or_rejected_as_marked_by_the_real_ingest(
    signing_vectors: dict[str, Any], sessions: async_sessionmaker[AsyncSession], real_stack: Stack
) -> None:
    stack = real_stack
    assert stack.database_url is not None
    keys = signing_vectors["keys"][VECTOR_PID]
    vector_ts = {case["payload"]["ts"] for case in signing_vectors["cases"]}
    assert len(vector_ts) == 1
    vector_now = datetime.fromtimestamp(vector_ts.pop(), UTC)

    async with sessions() as session:
        if await session.get(m.Region, "ZA-LP") is None:
            session.add(m.Region(code="ZA-LP", name="Limpopo"))
            await session.flush()
        device = m.Device(pid=VECTOR_PID, region="ZA-LP", label="signing vectors", active=True)
        device.keys = [
            # kid 1 rotated out a day before the vectors were signed, still inside its grace period;
            m.DeviceKey(kid=1, secret=keys["1"], state=m.KeyState.GRACE,
                        grace_until=vector_now + timedelta(days=6)),
            # kid 2 is the current key.
            m.DeviceKey(kid=2, secret=keys["2"], state=m.KeyState.CURRENT),
        ]
        session.add(device)
        await session.commit()
    stored = psql(stack.database_url, "SELECT string_agg(secret, ' ') FROM device_key k JOIN device d "
                                      f"ON d.id = k.device_id WHERE d.pid = {sql_literal(VECTOR_PID)}")
    assert keys["1"] not in stored and keys["2"] not in stored, "secrets must be encrypted at rest"

    service = IngestService(POLICY)
    seen = {True: 0, False: 0}
    for case in signing_vectors["cases"]:
        envelope = Envelope(
            body=case["json"].encode("utf-8"),  # the bytes a device sends, not a re-serialisation
            transport="mqtt",
            topic=f"panic/ingest/{VECTOR_PID}",
            received_at=vector_now,
        )
        # Each case alone on the empty database (some share a nonce), then rolled back.
        async with sessions() as session:
            (outcome,), incidents = await service.process(session, [envelope], now=vector_now)
            rows = await session.execute(
                select(m.Incident.id, m.Incident.message, m.Incident.lat, m.Incident.lng, m.Incident.device_ts)
                .where(m.Incident.device_pid == VECTOR_PID)
            )
            stored_incidents = [tuple(row) for row in rows]
            announced = [i.id for i in incidents]
            await session.rollback()

        if case["valid"]:
            assert outcome.verdict == Verdict.ACCEPTED, (case["name"], outcome)
            assert outcome.incident_id is not None and announced == [outcome.incident_id]
            p = case["payload"]
            assert stored_incidents == [(outcome.incident_id, p["msg"], p.get("lat"), p.get("lng"), vector_now)], case["name"]
        else:
            assert outcome.verdict == Verdict.REJECTED, (case["name"], outcome)
            assert outcome.reason == Reason.BAD_SIGNATURE, (case["name"], outcome)
            assert announced == [] and stored_incidents == [], case["name"]
        seen[case["valid"]] += 1
    assert seen[True] >= 1 and seen[False] >= 1, seen
    assert incidents_of(stack, VECTOR_PID) == 0, "every case was rolled back"


@pytest.fixture(scope="module")
def admin(server: Server) -> Admin:
    return Admin.create(server.stack)


def _keys(stack: Stack, pid: str) -> dict[int, tuple[str, bool]]:
    """kid → (state, grace still running) as stored."""
    assert stack.database_url is not None
    out = psql(stack.database_url, "SELECT k.kid, k.state, coalesce(k.grace_until > now(), false) FROM device_key k "
                                   f"JOIN device d ON d.id = k.device_id WHERE d.pid = {sql_literal(pid)} ORDER BY k.kid")
    return {int(kid): (state, running == "t") for kid, state, running in (line.split("|") for line in out.splitlines())}


def test_rotated_key_new_kid_verifies_old_kid_verifies_until_grace_ends_then_is_revoked(
    server: Server, admin: Admin
) -> None:
    stack = server.stack
    assert stack.database_url is not None
    old = stack.create_device(unique_pid("rot"), unique_region())
    pid = old["pid"]
    assert old["kid"] == 1

    new = stack.rotate_device(pid)
    assert new["pid"] == pid and new["kid"] == 2 and new["secret"] != old["secret"]
    assert _keys(stack, pid) == {1: ("grace", True), 2: ("current", False)}

    assert stack.submit(sos(new)).status_code == 201, "the new key verifies"
    assert stack.submit(sos(old)).status_code == 201, "the old key verifies during its grace period"
    # Naming kid 2 but signing with kid 1's secret is not rescued by trying the other key.
    no_fallback = stack.submit(sos({**new, "secret": old["secret"]}))
    assert no_fallback.status_code == 401 and no_fallback.json()["reason"] == Reason.BAD_SIGNATURE
    assert incidents_of(stack, pid) == 2

    psql(stack.database_url, "UPDATE device_key SET grace_until = now() - interval '1 second' WHERE kid = 1 "
                             f"AND device_id = (SELECT id FROM device WHERE pid = {sql_literal(pid)})")
    before = admin.rejected(Reason.REVOKED_KID)
    expired = sos(old, nonce=f"after-grace-{uuid.uuid4().hex}")
    refused = stack.submit(expired)
    assert refused.status_code == 401, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["reason"] == Reason.REVOKED_KID
    assert admin.rejected(Reason.REVOKED_KID) == before + 1
    [logged] = admin.rejections(Reason.REVOKED_KID, pid=pid)
    assert expired["sig"] not in json.dumps(logged)

    assert stack.submit(sos(new)).status_code == 201, "the new key still verifies"
    assert incidents_of(stack, pid) == 3
