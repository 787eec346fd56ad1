"""The telemetry subscription: its own small MQTT client beside the SOS ingest.

Telemetry is a latest-wins status, so a report lost in a crash is replaced by the next one:
QoS 1 with automatic acknowledgement and a clean session is enough here.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import aiomqtt
from sqlalchemy.exc import SQLAlchemyError

from naboom.ingest.mqtt import Backoff
from naboom.ingest.pipeline import SessionFactory
from naboom.operations.instruments import TELEMETRY
from naboom.settings import Settings
from naboom.telemetry.schemas import TELEMETRY_TOPIC
from naboom.telemetry.service import TelemetryRejected, record

log = logging.getLogger(__name__)


class TelemetrySubscriber:
    """Subscribes to ``device/+/telemetry`` and stores each report; reconnects with back-off."""

    def __init__(self, settings: Settings, sessions: SessionFactory) -> None:
        self._settings = settings
        self._sessions = sessions
        self.connected = asyncio.Event()

    def _client(self) -> aiomqtt.Client:
        target = self._settings.mqtt_target
        return target.client(f"{self._settings.mqtt_client_id}-telemetry", clean_session=True)  # type: ignore[no-any-return]

    async def run(self) -> None:
        """Connect, subscribe and store reports until cancelled."""
        backoff = Backoff()
        while True:
            try:
                async with self._client() as client:
                    await client.subscribe(TELEMETRY_TOPIC, qos=1)
                    self.connected.set()
                    backoff.reset()
                    async for message in client.messages:
                        await self.handle(message.topic.value, bytes(message.payload))  # type: ignore[arg-type]
            except aiomqtt.MqttError as exc:
                log.warning("telemetry subscription lost (%s)", exc)
            self.connected.clear()
            await asyncio.sleep(backoff.next_delay())

    async def handle(self, topic: str, body: bytes) -> None:
        """Store one report; a bad one is logged and counted, never raised."""
        parts = topic.split("/")
        pid = parts[1] if len(parts) == 3 else ""
        try:
            async with self._sessions() as session:
                stored = await record(session, body, pid, datetime.now(UTC))
                await session.commit()
        except TelemetryRejected as exc:
            TELEMETRY.labels("rejected", exc.reason).inc()
            log.warning("telemetry from %r rejected: %s: %s", pid, exc.reason, exc)
            return
        except SQLAlchemyError:
            # The next report brings the status again; the subscription must not die for one.
            TELEMETRY.labels("failed", "database").inc()
            log.exception("could not store telemetry from %r", pid)
            return
        TELEMETRY.labels("stored" if stored else "stale", "").inc()
