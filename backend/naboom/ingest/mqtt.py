"""The MQTT ingest loop: batches of messages, committed, then acknowledged, then broadcast."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime

import aiomqtt
from sqlalchemy.exc import SQLAlchemyError

from naboom.ingest.pipeline import IngestPipeline
from naboom.ingest.schemas import Envelope
from naboom.settings import Settings

log = logging.getLogger(__name__)

class ManualAck:
    """The one place that reaches into aiomqtt's paho client.

    aiomqtt 2 lets paho acknowledge a QoS 1 message as soon as it is queued; with manual
    acknowledgement the PUBACK goes out only when :meth:`ack` is called, after the commit.
    """

    def __init__(self, client: aiomqtt.Client) -> None:
        self._paho = client._client  # noqa: SLF001
        self._paho.manual_ack_set(True)

    def ack(self, message: aiomqtt.Message) -> None:
        """Send the PUBACK for one message."""
        if message.qos > 0:
            self._paho.ack(message.mid, message.qos)


class Backoff:
    """Exponential back-off with full jitter, capped."""

    def __init__(self, base: float = 0.5, cap: float = 30.0) -> None:
        self.base, self.cap, self.attempt = base, cap, 0

    def reset(self) -> None:
        """Start again from the shortest delay."""
        self.attempt = 0

    def next_delay(self) -> float:
        """The next delay to wait."""
        self.attempt += 1
        return random.uniform(0, min(self.cap, self.base * 2**self.attempt))


class StoreUnavailable(Exception):
    """The database refused a batch; the connection is dropped so the broker redelivers it."""


class MqttIngest:
    """Owns the subscription; reconnects with back-off forever."""

    def __init__(self, settings: Settings, pipeline: IngestPipeline) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self.connected = asyncio.Event()
        self.last_batch_at: datetime | None = None

    def _client(self) -> aiomqtt.Client:
        target = self._settings.mqtt_target
        return aiomqtt.Client(
            hostname=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            identifier=self._settings.mqtt_client_id,
            protocol=aiomqtt.ProtocolVersion.V311,
            # A persistent session: what arrives while we are away is queued for us.
            clean_session=False,
            keepalive=30,
            tls_params=aiomqtt.TLSParameters() if target.tls else None,
        )

    async def run(self) -> None:
        """Connect, subscribe and consume until cancelled."""
        backoff = Backoff()
        topic = self._settings.ingest_topic
        while True:
            client = self._client()
            acker = ManualAck(client)
            try:
                async with client:
                    await client.subscribe(topic, qos=1)
                    log.info("ingest subscribed to %s as %s", topic, self._settings.mqtt_client_id)
                    self.connected.set()
                    backoff.reset()
                    await self._consume(client, acker)
            except (aiomqtt.MqttError, StoreUnavailable) as exc:
                delay = backoff.next_delay()
                log.warning("ingest disconnected (%s); reconnecting in %.1fs", exc, delay)
            except Exception:
                # Unacknowledged messages come back after the reconnect; the loop itself must not die.
                delay = backoff.next_delay()
                log.exception("ingest failed unexpectedly; reconnecting in %.1fs", delay)
            self.connected.clear()
            await asyncio.sleep(delay)

    async def _consume(self, client: aiomqtt.Client, acker: ManualAck) -> None:
        messages = client.messages
        limit = self._settings.mqtt_batch_size
        while True:
            batch = [await anext(messages)]
            while len(messages) and len(batch) < limit:
                batch.append(await anext(messages))
            await self.handle(batch, acker)

    async def handle(self, batch: list[aiomqtt.Message], acker: ManualAck) -> None:
        """Store a batch in one transaction, then acknowledge every message, then broadcast."""
        now = datetime.now(UTC)
        envelopes = [
            Envelope(body=bytes(msg.payload), transport="mqtt", topic=msg.topic.value, received_at=now)  # type: ignore[arg-type]
            for msg in batch
        ]
        try:
            _, stored = await self._pipeline.store(envelopes)
        except (SQLAlchemyError, OSError) as exc:
            raise StoreUnavailable(f"database: {exc.__class__.__name__}: {exc}") from exc
        for msg in batch:
            acker.ack(msg)
        self.last_batch_at = now
        await self._pipeline.announce(stored)
