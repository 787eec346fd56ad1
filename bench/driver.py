"""The ingest benchmarks' publisher: the simulator's load, sent through the bridge's MQTT client.

The benchmark driver shares the machine's two cores with what it measures. Through the
simulator's paho clients (a network thread per connection, and per message paho's Python
packet code both ways) publishing 30,000 SOS flat out kept about 0.7 of a core busy, taken from
``naboom serve``. :class:`LeanConnections` gives ``naboom_sim.load.run_load`` the same
connections (``--connections`` of them, QoS 1, clean sessions) through
:class:`naboom.outbox.publisher.Publisher`: what the load publishes in one turn of the event
loop goes out in one write per connection, the next as soon as the broker acknowledged it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from naboom.outbox.publisher import Publisher
from naboom.settings import MqttTarget

# A batch not acknowledged within this long fails the run.
ACK_WITHIN_SECONDS = 60.0


class _Connection:
    """One connection: ``publish`` queues; a sender publishes whatever is queued, batch after batch."""

    def __init__(self, target: MqttTarget, client_id: str) -> None:
        self._target = target
        self._client_id = client_id
        self._queued: list[tuple[str, bytes]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stack = contextlib.AsyncExitStack()
        self._sender: asyncio.Task[None] | None = None

    async def open(self) -> None:
        publisher = await self._stack.enter_async_context(Publisher(self._target, self._client_id, keepalive=60))
        self._sender = asyncio.create_task(self._send(publisher))

    def publish(self, topic: str, body: bytes, qos: int = 1) -> None:
        if self._sender is None or self._sender.done():
            raise ConnectionError(f"{self._client_id}: not connected")
        self._queued.append((topic, body))
        self._idle.clear()
        self._wake.set()

    async def _send(self, publisher: Publisher) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queued = self._queued, []
            if batch and not all(await publisher.publish(batch, ACK_WITHIN_SECONDS)):
                raise ConnectionError(f"{self._client_id}: the broker did not acknowledge a batch of {len(batch)}")
            if not self._queued:
                self._idle.set()

    async def close(self, wait: float) -> None:
        """Wait up to ``wait`` seconds for what is queued and in flight, then disconnect."""
        if self._sender is not None:
            idle = asyncio.ensure_future(self._idle.wait())
            await asyncio.wait({idle, self._sender}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            idle.cancel()
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await self._sender
        await self._stack.aclose()


class LeanConnections:
    """``naboom_sim.load.Connections`` for a broker without logins, through :class:`Publisher`."""

    def __init__(self, broker: Any, devices: list[Any], count: int, run: str) -> None:
        if broker.transport != "tcp" or any(d.mqtt_username for d in devices):
            raise ValueError("the lean driver speaks plain MQTT to a broker without device logins")
        target = MqttTarget(broker.host, broker.port, tls=broker.tls)
        self.clients = [_Connection(target, f"naboom-bench-load-{run}-{k}") for k in range(max(1, count))]

    async def open(self) -> None:
        await asyncio.gather(*(client.open() for client in self.clients))

    def client_for(self, item: Any, seq: int) -> _Connection:
        return self.clients[seq % len(self.clients)]

    async def close(self) -> None:
        await asyncio.gather(*(client.close(30.0) for client in self.clients))
