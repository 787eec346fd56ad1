"""The outbox bridge's batch publisher against a real Mosquitto of the test's own.

A whole batch goes out at once, in order; each message counts as published only once its
PUBACK is in: a broker that stops answering leaves the batch unconfirmed when the wait runs out,
and a broker that goes away ends the wait at once with what it had confirmed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from naboom.ingest.mqtt import PublishMany
from tests.integration.outbox_helpers import Mosquitto

# Below Mosquitto's default queue per subscriber (1,000), above the in flight limit given to
# paho (200), so most of a batch waits its turn in paho.
COUNT = 900
INFLIGHT = 200


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path) as mosquitto:
        yield mosquitto


def _client(port: int, inflight: int = INFLIGHT) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", port, identifier=f"pm-{uuid.uuid4().hex[:8]}", max_inflight_messages=inflight)


async def test_a_batch_goes_out_in_order_and_every_message_is_confirmed(broker: Mosquitto) -> None:
    topic = f"test/many/{uuid.uuid4().hex[:8]}"
    bodies = [f'{{"n":{n}}}'.encode() for n in range(COUNT)]
    async with _client(broker.port) as subscriber, _client(broker.port) as publisher_client:
        await subscriber.subscribe(topic, qos=1)
        confirmed = await PublishMany(publisher_client).publish([(topic, body) for body in bodies], within=30)
        received = []
        async with asyncio.timeout(60):
            async for message in subscriber.messages:
                received.append(message.payload)
                if len(received) == COUNT:
                    break
    assert confirmed == [True] * COUNT
    assert received == bodies


async def test_a_broker_that_stops_answering_leaves_the_batch_unconfirmed(broker: Mosquitto) -> None:
    assert broker.proc is not None
    async with _client(broker.port) as client:
        publisher = PublishMany(client)
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            confirmed = await publisher.publish([("test/stopped", b"{}")] * 10, within=1.0)
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
    assert confirmed == [False] * 10


async def test_a_broker_that_goes_away_ends_the_wait_with_the_rest_unconfirmed(broker: Mosquitto) -> None:
    assert broker.proc is not None
    async with _client(broker.port, inflight=20) as client:
        publisher = PublishMany(client)
        # Frozen, so no PUBACK comes; then killed while the batch waits: the connection drops.
        os.kill(broker.proc.pid, signal.SIGSTOP)
        waiting = asyncio.ensure_future(publisher.publish([("test/killed", b"{}")] * COUNT, within=600))
        broker.proc.kill()
        broker.proc.wait(timeout=30)
        confirmed = await asyncio.wait_for(waiting, timeout=60)
        with pytest.raises(aiomqtt.MqttError):
            await client.publish("test/after", b"{}", qos=1, timeout=5)
    assert confirmed == [False] * COUNT
