"""The MQTT ingest sends each device's ack itself, ahead of the PUBACK that ends its SOS's delivery.

On the wire (paho's packet queue of a real client): one write holds the acks' QoS 1 PUBLISH
packets first, each with a packet id of its own, then the batch's PUBACKs. Through a real
Mosquitto and PostgreSQL (in-process ingest): when the batch's commit reaches the database but
its confirmation is lost, nothing is acknowledged and no ack goes out; the broker delivers the
SOS again, it is answered as a duplicate of the committed incident, and the device hears one
ack naming it, and operators see the incident on the live feed once. Over MQTT the acks leave
no outbox rows (the region's alert still does).
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import aiomqtt
import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from naboom.db import models as m
from naboom.ingest.mqtt import ManualAck, MqttIngest
from naboom.ingest.pipeline import IngestPipeline
from naboom.ingest.service import IngestPolicy, IngestService
from naboom.settings import Settings
from tests.integration.outbox_helpers import Subscriber
from tests.support import (
    MQTT_HOST,
    MQTT_PORT,
    Stack,
    drop_mqtt_session,
    in_process_sessions,
    publish,
    publisher,
    sos,
    unique_pid,
    unique_region,
    wait_for,
)


def _packets(data: bytes) -> list[tuple[int, bytes]]:
    """``(first byte, body)`` of each MQTT packet in ``data`` (remaining lengths under 16 kB)."""
    packets, offset = [], 0
    while offset < len(data):
        kind, length, shift, offset = data[offset], 0, 0, offset + 1
        while True:
            digit = data[offset]
            offset += 1
            length |= (digit & 0x7F) << shift
            shift += 7
            if not digit & 0x80:
                break
        packets.append((kind, data[offset : offset + length]))
        offset += length
    return packets


async def test_device_acks_go_out_ahead_of_the_pubacks_in_the_same_write() -> None:
    client = aiomqtt.Client(MQTT_HOST, MQTT_PORT, identifier=f"test-acks-{uuid.uuid4().hex[:8]}")
    acker = ManualAck(client)
    paho = client._client
    batch = [
        aiomqtt.Message("panic/ingest/a", b"{}", qos=1, retain=False, mid=mid, properties=None) for mid in (7, 8)
    ]
    acks = [("panic/ack/a", b'{"status":"received"}'), ("panic/ack/b", b'{"status":"received","nonce":2}')]

    acker.ack_many(batch, acks)

    # Not connected: the write waits in paho's queue, one packet for all of it.
    [queued] = list(paho._out_packet)
    packets = _packets(bytes(queued["packet"]))
    assert [kind for kind, _ in packets] == [0x32, 0x32, 0x40, 0x40]  # PUBLISH QoS 1 (twice), then PUBACK
    ids = []
    for (_, body), (topic, payload) in zip(packets[:2], acks, strict=True):
        (size,) = struct.unpack("!H", body[:2])
        assert body[2 : 2 + size].decode() == topic
        ids.append(struct.unpack("!H", body[2 + size : 4 + size])[0])
        assert body[4 + size :] == payload
    assert len(set(ids)) == 2 and 0 not in ids
    assert [struct.unpack("!H", body)[0] for _, body in packets[2:]] == [7, 8]


class _CommitThenLost:
    """Sessions from ``maker``; the ``fail``-th one's commit reaches the database, then its confirmation is lost."""

    def __init__(self, maker: async_sessionmaker[AsyncSession], fail: int = 1) -> None:
        self.maker, self.fail = maker, fail
        self.opened = 0

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[AsyncSession]:
        async with self.maker() as session:
            self.opened += 1
            if self.opened == self.fail:
                commit = session.commit

                async def committed_then_lost() -> None:
                    await commit()
                    raise OperationalError("COMMIT", None, ConnectionResetError("connection reset by peer"))

                session.commit = committed_then_lost  # type: ignore[method-assign]
            yield session


class _Feed:
    def __init__(self) -> None:
        self.events: list[str] = []

    async def publish_many(self, region: str, items: list[tuple[str, dict[str, Any]]]) -> None:
        self.events += [event for event, _ in items]


@pytest.fixture
async def sessions(real_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    for key, value in real_stack.env().items():
        if key.startswith("NABOOM_"):
            monkeypatch.setenv(key, value)  # so the environment is restored afterwards
    async with in_process_sessions(real_stack) as maker:
        yield maker


def _ingest(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch, fail: int = 1
) -> tuple[MqttIngest, IngestService, _Feed, str, str]:
    """An in-process ingest whose ``fail``-th batch commits but hears no confirmation, on a topic
    and session of its own (no other ingest takes its messages)."""
    prefix, client_id = f"test/acks-{uuid.uuid4().hex[:8]}", f"test-acks-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("NABOOM_MQTT_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("NABOOM_MQTT_CLIENT_ID", client_id)
    policy = IngestPolicy(
        dedup_window=timedelta(days=7), future_skew=timedelta(minutes=5), rejection_log_max_rows=10_000
    )
    service = IngestService(replace(policy, topic_prefix=prefix))
    feed = _Feed()
    pipeline = IngestPipeline(_CommitThenLost(sessions, fail), service, feed)  # type: ignore[arg-type]
    return MqttIngest(Settings.from_env(), pipeline), service, feed, prefix, client_id


async def test_an_sos_committed_but_not_acknowledged_comes_back_and_its_device_hears_one_ack(
    sessions: async_sessionmaker[AsyncSession], real_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest, service, feed, prefix, client_id = _ingest(sessions, monkeypatch)
    region = unique_region()
    device = real_stack.create_device(unique_pid(), region)
    pid = device["pid"]
    ack_topic = f"panic/ack/{pid}"
    message = sos(device)

    # Built in a thread: it waits for its own subscription with a loop of its own.
    sub = await asyncio.to_thread(Subscriber, MQTT_HOST, MQTT_PORT, ack_topic)
    try:
        task = asyncio.create_task(ingest.run())
        try:
            await asyncio.wait_for(ingest.connected.wait(), 20)
            with publisher(MQTT_HOST, MQTT_PORT) as pub:
                await asyncio.to_thread(publish, pub, f"{prefix}/{pid}", message)
            await wait_for(lambda: service.counters.duplicates == 1 or None, 30, "the SOS to come back")
            (ack,) = await wait_for(lambda: sub.on(ack_topic), 20, "the device's ack")
        finally:
            await ingest.shutdown(task, 10)
        # The ingest has disconnected: a marker published now reaches the subscriber after anything it sent.
        with publisher(MQTT_HOST, MQTT_PORT) as pub:
            await asyncio.to_thread(publish, pub, ack_topic, {"marker": True})
        heard = await wait_for(lambda: sub.at_least(ack_topic, 2), 20, "the marker")
    finally:
        sub.close()
        drop_mqtt_session(client_id)

    assert heard == [ack, {"marker": True}]
    assert ack == {"incident_id": ack["incident_id"], "status": "received", "nonce": message["nonce"]}
    assert (service.counters.accepted, service.counters.duplicates) == (1, 1)
    async with sessions() as session:
        incidents = (await session.scalars(select(m.Incident.id).where(m.Incident.device_pid == pid))).all()
        outbox = (
            await session.scalars(
                select(m.OutboxMessage.topic).where(m.OutboxMessage.payload["id"].as_string() == ack["incident_id"])
            )
        ).all()
        acks_in_outbox = await session.scalars(select(m.OutboxMessage.id).where(m.OutboxMessage.topic == ack_topic))
    assert [str(i) for i in incidents] == [ack["incident_id"]]
    # The region's alert went through the outbox, once (the duplicate changed nothing); the ack did not.
    assert outbox == [f"panic/alerts/{region}"]
    assert acks_in_outbox.all() == []
    # Nothing was broadcast for the batch that failed; its redelivery showed that it had
    # committed, and the incident went out then, once.
    assert feed.events == ["incident.created"]


async def test_a_further_sos_committed_unconfirmed_is_broadcast_as_an_update_once_it_comes_back(
    sessions: async_sessionmaker[AsyncSession], real_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest, service, feed, prefix, client_id = _ingest(sessions, monkeypatch, fail=2)
    device = real_stack.create_device(unique_pid(), unique_region())
    pid = device["pid"]
    try:
        task = asyncio.create_task(ingest.run())
        try:
            await asyncio.wait_for(ingest.connected.wait(), 20)
            with publisher(MQTT_HOST, MQTT_PORT) as pub:
                await asyncio.to_thread(publish, pub, f"{prefix}/{pid}", sos(device))
                await wait_for(lambda: service.counters.accepted == 1 or None, 30, "the first SOS")
                # The device presses again: this batch commits, but its confirmation is lost.
                await asyncio.to_thread(publish, pub, f"{prefix}/{pid}", sos(device))
            await wait_for(lambda: service.counters.duplicates == 1 or None, 30, "the second SOS to come back")
            await wait_for(lambda: len(feed.events) == 2 or None, 10, "the update to be broadcast")
        finally:
            await ingest.shutdown(task, 10)
    finally:
        drop_mqtt_session(client_id)

    assert (service.counters.accepted, service.counters.duplicates) == (2, 1)
    assert feed.events == ["incident.created", "incident.updated"]
    async with sessions() as session:
        counts = (await session.scalars(select(m.Incident.sos_count).where(m.Incident.device_pid == pid))).all()
    assert counts == [2]
