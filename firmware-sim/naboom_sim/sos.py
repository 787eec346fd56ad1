"""Raising an SOS: sign it, keep it in the outbox, deliver the outbox until the system acknowledges.

Delivery is at-least-once on purpose: the same signed payload may be published several times
(no ack in time, a reconnect); the server de-duplicates by ``pid:nonce`` and acknowledges a
duplicate with the same incident id, so the device keeps an entry until it holds that ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from naboom_sim.backoff import Backoff
from naboom_sim.credentials import Credentials
from naboom_sim.outbox import Entry, Outbox
from naboom_sim.signing import sign
from naboom_sim.transport import Broker, device_client

log = logging.getLogger("naboom_sim.sos")


def ingest_topic(pid: str) -> str:
    return f"panic/ingest/{pid}"


def ack_topic(pid: str) -> str:
    return f"panic/ack/{pid}"


def build_sos(
    device: Credentials,
    msg: str | None = None,
    lat: float | None = None,
    lng: float | None = None,
    acc: float | None = None,
    *,
    ts: int | None = None,
    nonce: str | int | None = None,
) -> dict[str, Any]:
    """A signed SOS payload raised now with a fresh random nonce (unless given)."""
    if (lat is None) != (lng is None):
        raise ValueError("give both lat and lng, or neither")
    payload: dict[str, Any] = {
        "pid": device.pid,
        "ts": int(time.time()) if ts is None else ts,
        "nonce": uuid.uuid4().hex if nonce is None else nonce,
        "kid": device.kid,
    }
    if msg is not None:
        payload["msg"] = msg
    for key, value in (("lat", lat), ("lng", lng), ("acc", acc)):
        if value is not None:
            payload[key] = value
    return sign(payload, device.secret)


@dataclass(frozen=True)
class Delivered:
    """One acknowledged SOS, as ``--json`` prints it."""

    pid: str
    nonce: str | int
    ts: int
    incident_id: str
    attempts: int
    latency_ms: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass
class DeliveryResult:
    """What a delivery run achieved: the acknowledged entries and how many are still queued."""

    delivered: list[Delivered]
    queued: int
    last_error: str | None = None


@dataclass(frozen=True)
class Patience:
    """How long to wait for each ack, and for the whole run (``None``: until everything is delivered)."""

    ack_timeout: float = 10.0
    give_up_after: float | None = None
    backoff_base: float = 0.5
    backoff_cap: float = 30.0


class _Acks:
    """Reads ``panic/ack/<pid>`` for one connection and remembers every ``received`` ack by nonce."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self._client = client
        self._seen: dict[str, str] = {}
        self._changed = asyncio.Event()
        self._failure: BaseException | None = None
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self._client.messages:
                try:
                    ack = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    continue
                if isinstance(ack, dict) and ack.get("status") == "received" and "nonce" in ack:
                    self._seen[_key(ack["nonce"])] = str(ack.get("incident_id"))
                    self._changed.set()
        except aiomqtt.MqttError as exc:
            self._failure = exc
            self._changed.set()

    def incident_of(self, nonce: str | int) -> str | None:
        return self._seen.get(_key(nonce))

    async def wait(self, nonce: str | int, seconds: float) -> str | None:
        """The incident id once the ack for ``nonce`` is here, ``None`` after ``seconds``; raises if the link broke."""
        deadline = time.monotonic() + seconds
        while True:
            if (incident := self.incident_of(nonce)) is not None:
                return incident
            if self._failure is not None:
                raise self._failure
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def _key(nonce: Any) -> str:
    # 7 and "7" are different nonces: compare their JSON forms.
    return json.dumps(nonce)


class _Deadline:
    def __init__(self, seconds: float | None) -> None:
        self._at = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        return None if self._at is None else max(0.0, self._at - time.monotonic())

    def clamp(self, seconds: float) -> float:
        remaining = self.remaining()
        return seconds if remaining is None else min(seconds, remaining)

    @property
    def passed(self) -> bool:
        return self._at is not None and time.monotonic() >= self._at


class LoginRefused(Exception):
    """The broker refused the device's login or client id: retrying cannot help, the credentials must change."""


# CONNACK refusals that no retry can fix: 3.1.1's codes 2, 4, 5 and their MQTT 5 forms (paho maps to these).
_REFUSED = {2, 4, 5, 133, 134, 135}


def _refusal(exc: aiomqtt.MqttError) -> bool:
    code = getattr(exc, "rc", None)
    return isinstance(exc, MqttConnectError) and getattr(code, "value", code) in _REFUSED


class _GiveUp(Exception):
    """The run's time is up; what is left stays queued."""


async def deliver_pending(
    outbox: Outbox,
    device: Credentials,
    broker: Broker,
    patience: Patience = Patience(),
    on_delivered: Callable[[Delivered], None] | None = None,
) -> DeliveryResult:
    """Deliver every entry of ``outbox``, oldest first, until all are acknowledged or the run gives up.

    Raises :class:`LoginRefused` when the broker refuses the login; the entries stay queued.
    Another run delivering the same outbox is waited for (within ``give_up_after``).
    """
    deadline = _Deadline(patience.give_up_after)
    while (lock := outbox.try_lock()) is None:
        if deadline.passed:
            return DeliveryResult([], len(outbox), "another run is delivering this outbox")
        await asyncio.sleep(deadline.clamp(0.1))
    try:
        return await _deliver_locked(outbox, device, broker, patience, on_delivered, deadline)
    finally:
        outbox.unlock(lock)


async def _deliver_locked(
    outbox: Outbox,
    device: Credentials,
    broker: Broker,
    patience: Patience,
    on_delivered: Callable[[Delivered], None] | None,
    deadline: _Deadline,
) -> DeliveryResult:
    backoff = Backoff(patience.backoff_base, patience.backoff_cap)
    delivered: list[Delivered] = []
    attempts: dict[str, int] = {}
    first_sent: dict[str, float] = {}
    last_error: str | None = None

    def done(entry: Entry, incident_id: str) -> None:
        outbox.remove(entry)
        key = _key(entry.nonce)
        sent = first_sent.get(key, time.monotonic())
        result = Delivered(
            pid=device.pid,
            nonce=entry.nonce,
            ts=int(entry.payload["ts"]),
            incident_id=incident_id,
            attempts=attempts.get(key, 0),
            latency_ms=round((time.monotonic() - sent) * 1000, 1),
        )
        delivered.append(result)
        if on_delivered is not None:
            on_delivered(result)

    async def session() -> None:
        client = device_client(
            broker, device.pid, device.mqtt_username, device.mqtt_password, timeout=patience.ack_timeout
        )
        async with client:
            await client.subscribe(ack_topic(device.pid), qos=1)
            acks = _Acks(client)
            try:
                for entry in outbox.entries():
                    await send_until_acked(client, acks, entry)
            finally:
                await acks.close()

    async def send_until_acked(client: aiomqtt.Client, acks: _Acks, entry: Entry) -> None:
        nonlocal last_error
        key = _key(entry.nonce)
        body = json.dumps(entry.payload)
        while True:
            if (incident := acks.incident_of(entry.nonce)) is not None:
                break
            if deadline.passed:
                raise _GiveUp
            first_sent.setdefault(key, time.monotonic())
            attempts[key] = attempts.get(key, 0) + 1
            await client.publish(ingest_topic(device.pid), body, qos=1)
            if (incident := await acks.wait(entry.nonce, deadline.clamp(patience.ack_timeout))) is not None:
                break
            # Keep listening through the backoff: a late ack still counts.
            last_error = f"no ack within {patience.ack_timeout:g} s"
            delay = backoff.next()
            log.warning(
                "%s: no ack for nonce %s yet; publishing again in %.1f s", device.pid, entry.nonce, delay
            )
            if (incident := await acks.wait(entry.nonce, deadline.clamp(delay))) is not None:
                break
        backoff.reset()
        done(entry, incident)

    while outbox.entries():
        if deadline.passed:
            last_error = last_error or "gave up"
            break
        try:
            remaining = deadline.remaining()
            async with asyncio.timeout(remaining):
                await session()
        except _GiveUp:
            break
        except (aiomqtt.MqttError, TimeoutError) as exc:
            if isinstance(exc, aiomqtt.MqttError) and _refusal(exc):
                raise LoginRefused(f"the broker {broker} refused {device.pid}: {exc}") from None
            last_error = str(exc) or type(exc).__name__
            if deadline.passed:
                break
            delay = deadline.clamp(backoff.next())
            log.warning("%s: broker %s unreachable (%s); retrying in %.1f s", device.pid, broker, exc, delay)
            await asyncio.sleep(delay)
    return DeliveryResult(delivered, len(outbox), last_error)
