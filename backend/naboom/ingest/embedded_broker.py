"""The embedded MQTT broker (amqtt) for the laptop default: TCP and WebSockets on loopback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin

from naboom.settings import EMBEDDED_MQTT_HOST, Settings

log = logging.getLogger(__name__)


class LoopbackAuth(BaseAuthPlugin):
    """Lets every loopback client in; a client with a username keeps a persistent session.

    amqtt drops the queued messages of sessions it considers anonymous, so the ingest
    (which logs in with a username) must not be one of them.
    """

    async def authenticate(self, *, session) -> bool:  # type: ignore[no-untyped-def,override]
        session.is_anonymous = not session.username
        return True


@asynccontextmanager
async def embedded_broker(settings: Settings) -> AsyncIterator[Broker]:
    """Run amqtt for the lifetime of the context."""
    broker = Broker(
        {
            "listeners": {
                "default": {"type": "tcp", "bind": f"{EMBEDDED_MQTT_HOST}:{settings.embedded_mqtt_port}"},
                "ws": {"type": "ws", "bind": f"{EMBEDDED_MQTT_HOST}:{settings.embedded_mqtt_ws_port}"},
            },
            "plugins": {f"{__name__}.LoopbackAuth": {}},
        }
    )
    await broker.start()
    log.info(
        "embedded MQTT broker on mqtt://%s:%d and ws://%s:%d",
        EMBEDDED_MQTT_HOST,
        settings.embedded_mqtt_port,
        EMBEDDED_MQTT_HOST,
        settings.embedded_mqtt_ws_port,
    )
    try:
        yield broker
    finally:
        await broker.shutdown()
