"""A big batch stored in two lanes side by side, on real PostgreSQL (in-process pipeline).

Each device's messages go to one lane, so a device's SOS in one batch still open one incident;
outcomes come back in the batch's order; when one lane fails after the other committed, the
committed part is broadcast, nothing is acknowledged, and the redelivered batch stores the rest
once and answers the committed part as duplicates.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from naboom.db import models as m
from naboom.ingest.mqtt import MqttIngest, StoreUnavailable
from naboom.ingest.pipeline import LANE_MIN_BATCH, IngestPipeline, PartlyStored
from naboom.ingest.schemas import Envelope, Verdict
from naboom.ingest.service import IngestPolicy, IngestService, Stored
from naboom.settings import get_settings
from tests.support import Stack, in_process_sessions, sos, unique_pid, unique_region

TOPIC = "panic/ingest"
PER_DEVICE = 16
POLICY = IngestPolicy(
    dedup_window=timedelta(days=7), future_skew=timedelta(minutes=5), rejection_log_max_rows=10_000,
    sos_attach_window=timedelta(minutes=30), topic_prefix=TOPIC,
)

Sessions = Callable[[], AbstractAsyncContextManager[AsyncSession]]


@pytest.fixture
async def sessions(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    for key, value in stack.env().items():
        if key.startswith("NABOOM_"):
            monkeypatch.setenv(key, value)  # so the environment is restored afterwards
    async with in_process_sessions(stack) as maker:
        yield maker


@pytest.fixture(scope="module")
def stack(real_stack: Stack) -> Stack:
    return real_stack


def _lane(pid: str) -> int:
    # The pipeline's own rule, in this same process (str hashes are per process).
    return hash(f"{TOPIC}/{pid}") % 2


def _devices(stack: Stack, per_lane: int) -> list[dict[str, Any]]:
    """Devices of one region, ``per_lane`` of them in each lane."""
    region = unique_region()
    lanes: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
    while min(len(found) for found in lanes.values()) < per_lane:
        pid = unique_pid()
        if len(lanes[_lane(pid)]) < per_lane:
            lanes[_lane(pid)].append(stack.create_device(pid, region))
    return [*lanes[0], *lanes[1]]


def _batch(devices: list[dict[str, Any]], per_device: int = PER_DEVICE) -> tuple[list[dict[str, Any]], list[Envelope]]:
    """``per_device`` SOS of every device, interleaved."""
    payloads = [sos(device) for _ in range(per_device) for device in devices]
    now = datetime.now(UTC)
    envelopes = [
        Envelope(body=json.dumps(p).encode(), transport="mqtt", topic=f"{TOPIC}/{p['pid']}", received_at=now)
        for p in payloads
    ]
    assert len(envelopes) >= LANE_MIN_BATCH
    return payloads, envelopes


class _Watched:
    """Sessions from ``maker``, counting how many are open at once; the ``fail``-th one's commit fails."""

    def __init__(self, maker: async_sessionmaker[AsyncSession], fail: int | None = None) -> None:
        self.maker, self.fail = maker, fail
        self.opened = self.open = self.peak = 0

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[AsyncSession]:
        async with self.maker() as session:
            self.opened += 1
            self.open += 1
            self.peak = max(self.peak, self.open)
            if self.opened == self.fail:
                async def lost() -> None:
                    raise OperationalError("COMMIT", None, ConnectionResetError("connection reset by peer"))

                session.commit = lost  # type: ignore[method-assign]
            try:
                yield session
            finally:
                self.open -= 1


async def _incidents_by_device(maker: async_sessionmaker[AsyncSession], pids: list[str]) -> dict[str, list[int]]:
    async with maker() as session:
        rows = await session.execute(
            select(m.Incident.device_pid, m.Incident.sos_count).where(m.Incident.device_pid.in_(pids))
        )
    found: dict[str, list[int]] = {pid: [] for pid in pids}
    for pid, count in rows:
        found[pid].append(count)
    return found


async def test_a_big_batch_is_stored_in_two_lanes_at_once_each_device_opening_one_incident_outcomes_in_order(
    sessions: async_sessionmaker[AsyncSession], stack: Stack
) -> None:
    devices = _devices(stack, per_lane=4)
    payloads, envelopes = _batch(devices)
    watched = _Watched(sessions)
    pipeline = IngestPipeline(watched, IngestService(POLICY), feed=None, lanes=2)  # type: ignore[arg-type]

    outcomes, stored = await pipeline.store(envelopes)

    assert (watched.opened, watched.peak) == (2, 2)
    assert [(o.verdict, o.pid, o.nonce) for o in outcomes] == [(Verdict.ACCEPTED, p["pid"], p["nonce"]) for p in payloads]
    by_pid: dict[str, set[Any]] = {}
    for outcome in outcomes:
        by_pid.setdefault(outcome.pid or "", set()).add(outcome.incident_id)
    assert all(len(ids) == 1 for ids in by_pid.values())
    assert sorted((i.device, i.sos_count) for i in stored.created) == sorted((d["pid"], PER_DEVICE) for d in devices)
    pids = [d["pid"] for d in devices]
    assert await _incidents_by_device(sessions, pids) == {pid: [PER_DEVICE] for pid in pids}


async def test_a_small_batch_or_one_lane_is_one_transaction(
    sessions: async_sessionmaker[AsyncSession], stack: Stack
) -> None:
    devices = _devices(stack, per_lane=1)
    _, envelopes = _batch(devices, per_device=LANE_MIN_BATCH)
    small = _Watched(sessions)
    await IngestPipeline(small, IngestService(POLICY), feed=None, lanes=2).store(envelopes[: LANE_MIN_BATCH - 1])  # type: ignore[arg-type]
    single = _Watched(sessions)
    await IngestPipeline(single, IngestService(POLICY), feed=None, lanes=1).store(envelopes[LANE_MIN_BATCH - 1 :])  # type: ignore[arg-type]
    assert (small.opened, single.opened) == (1, 1)


async def test_when_one_lane_fails_the_committed_lane_is_reported_and_a_redelivery_stores_the_rest_once(
    sessions: async_sessionmaker[AsyncSession], stack: Stack
) -> None:
    devices = _devices(stack, per_lane=3)
    payloads, envelopes = _batch(devices)
    committed_pids = {d["pid"] for d in devices if _lane(d["pid"]) == 0}
    service = IngestService(POLICY)

    # The second lane's COMMIT fails (the connection dropped): the first lane's work stands.
    with pytest.raises(PartlyStored) as caught:
        await IngestPipeline(_Watched(sessions, fail=2), service, feed=None, lanes=2).store(envelopes)  # type: ignore[arg-type]
    assert isinstance(caught.value.cause, OperationalError)
    assert {i.device for i in caught.value.stored.created} == committed_pids
    pids = [d["pid"] for d in devices]
    after_failure = await _incidents_by_device(sessions, pids)
    assert after_failure == {pid: [PER_DEVICE] if pid in committed_pids else [] for pid in pids}

    # The broker delivers the whole batch again.
    outcomes, stored = await IngestPipeline(sessions, service, feed=None, lanes=2).store(envelopes)  # type: ignore[arg-type]
    first_ids = {i.device: i.id for i in caught.value.stored.created}
    for payload, outcome in zip(payloads, outcomes, strict=True):
        if payload["pid"] in committed_pids:
            assert (outcome.verdict, outcome.incident_id) == (Verdict.DUPLICATE, first_ids[payload["pid"]])
        else:
            assert outcome.verdict == Verdict.ACCEPTED
    assert {i.device for i in stored.created} == set(pids) - committed_pids
    assert await _incidents_by_device(sessions, pids) == {pid: [PER_DEVICE] for pid in pids}
    async with sessions() as session:
        receipts = await session.scalar(
            select(func.count()).select_from(m.SosReceipt).where(
                m.SosReceipt.key.in_([f"{p['pid']}:{p['nonce']}" for p in payloads])
            )
        )
    assert receipts == len(payloads)


class _Acks:
    def __init__(self) -> None:
        self.sent: list[int] = []
        self.published: list[str] = []

    def ack_many(self, messages: list[aiomqtt.Message], publish: list[tuple[str, bytes]] = ()) -> None:  # type: ignore[assignment]
        self.sent += [message.mid for message in messages]
        self.published += [topic for topic, _ in publish]


class _Broadcasts:
    def __init__(self) -> None:
        self.submitted: list[Stored] = []

    async def submit(self, stored: Stored) -> None:
        self.submitted.append(stored)


async def test_a_partly_stored_mqtt_batch_is_broadcast_as_far_as_it_committed_and_left_unacknowledged(
    sessions: async_sessionmaker[AsyncSession], stack: Stack
) -> None:
    devices = _devices(stack, per_lane=2)
    payloads, _ = _batch(devices)
    committed_pids = {d["pid"] for d in devices if _lane(d["pid"]) == 0}
    pipeline = IngestPipeline(_Watched(sessions, fail=2), IngestService(POLICY), feed=None, lanes=2)  # type: ignore[arg-type]
    ingest = MqttIngest(get_settings(), pipeline)
    broadcasts = _Broadcasts()
    ingest._announcer = broadcasts  # type: ignore[assignment]
    acks = _Acks()
    batch = [
        aiomqtt.Message(f"{TOPIC}/{p['pid']}", json.dumps(p).encode(), qos=1, retain=False, mid=n + 1, properties=None)
        for n, p in enumerate(payloads)
    ]

    with pytest.raises(StoreUnavailable, match="OperationalError"):
        await ingest.handle(batch, acks)  # type: ignore[arg-type]

    assert acks.sent == [] and acks.published == []
    [announced] = broadcasts.submitted
    assert {i.device for i in announced.created} == committed_pids
