"""The outbox bridge's MQTT connection: publish only, QoS 1, a whole batch in flight at once.

The bridge sends one message per SOS (its device's ack) in the storms when the ingest is
busiest. Through paho each message cost the event loop two trips through paho's Python
packet machinery (the PUBLISH: a message-info object, a topic check, a lock, a queue; the
PUBACK: a read, a decode with a properties object, two callbacks), about a quarter of the
serving process's time when flat out (``bench/ingest.py``, py-spy). The bridge needs only
MQTT 3.1.1's simplest part, so this speaks it directly on an asyncio protocol: a batch's
PUBLISH packets go out in one write, PUBACKs are parsed from each read in one pass.

What it does: CONNECT (clean session, the user name and password of ``NABOOM_MQTT_URL``,
TLS for ``mqtts://``), PUBLISH at QoS 1 with a packet id per message in flight, PINGREQ when
the connection has been quiet for half the keep-alive (a broker that answers nothing for a
whole keep-alive is taken to be gone), DISCONNECT on the way out. It subscribes to nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
import time
from collections.abc import Sequence
from types import TracebackType

import aiomqtt

from naboom.settings import MqttTarget

_U16 = struct.Struct("!H")
_CONNECT, _CONNACK, _PUBLISH_QOS1, _PUBACK = 0x10, 0x20, 0x32, 0x40
_PINGREQ, _PINGRESP, _DISCONNECT = b"\xc0\x00", 0xD0, b"\xe0\x00"
_MAX_PACKET_ID = 0xFFFF
# CONNACK return codes (MQTT 3.1.1, 3.2.2.3).
_REFUSED = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


def _length(value: int) -> bytes:
    """MQTT's variable-length integer (the fixed header's remaining length)."""
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _string(value: str) -> bytes:
    data = value.encode()
    return _U16.pack(len(data)) + data


def connect_packet(client_id: str, keepalive: int, username: str | None, password: str | None) -> bytes:
    """CONNECT, MQTT 3.1.1, clean session."""
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + _U16.pack(keepalive) + _string(client_id)
    if username is not None:
        body += _string(username)
    if password is not None:
        body += _string(password)
    return bytes([_CONNECT]) + _length(len(body)) + body


def publish_packet(topic: str, packet_id: int, payload: bytes) -> bytes:
    """PUBLISH at QoS 1, not retained, first delivery."""
    if not topic or "+" in topic or "#" in topic:
        raise ValueError(f"not a topic to publish to: {topic!r}")
    name = topic.encode()
    return b"".join(
        (bytes([_PUBLISH_QOS1]), _length(len(name) + 4 + len(payload)), _U16.pack(len(name)), name, _U16.pack(packet_id), payload)
    )


class _Protocol(asyncio.Protocol):
    """Reads what the broker sends: CONNACK, then PUBACKs and PINGRESPs."""

    def __init__(self, owner: Publisher) -> None:
        self._owner = owner
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        owner = self._owner
        owner.heard_at = time.monotonic()
        offset, size = 0, len(buffer)
        while size - offset >= 2:
            kind = buffer[offset]
            # Everything the broker sends a publisher has a one-byte remaining length.
            length = buffer[offset + 1]
            if length & 0x80:
                owner.fail(f"unexpected packet 0x{kind:02x} of more than 127 bytes from the broker")
                return
            if size - offset < 2 + length:
                break
            body = bytes(buffer[offset + 2 : offset + 2 + length])
            offset += 2 + length
            if kind == _PUBACK and length == 2:
                owner.acknowledged(_U16.unpack(body)[0])
            elif kind == _PINGRESP:
                pass
            elif kind == _CONNACK and length == 2:
                owner.connack(body[1])
            else:
                owner.fail(f"unexpected packet 0x{kind:02x} from the broker")
                return
        del buffer[:offset]

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.lost(exc)


class Publisher:
    """An MQTT 3.1.1 connection for QoS 1 publishes, one batch at a time.

    ``async with Publisher(target, client_id) as publisher`` connects (or raises
    :class:`aiomqtt.MqttError`); :meth:`publish` sends a batch and waits for its PUBACKs;
    :attr:`gone` completes when the connection is lost. A batch that is not wholly confirmed
    ends the connection, so a late PUBACK can never be taken for a later message's.
    """

    def __init__(self, target: MqttTarget, client_id: str, *, keepalive: int = 15, connect_timeout: float = 10.0) -> None:
        self._target = target
        self._client_id = client_id
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self._transport: asyncio.Transport | None = None
        self._connack: asyncio.Future[int] | None = None
        self._outstanding: set[int] = set()
        self._all_in: asyncio.Future[None] | None = None
        self._next_id = 0
        self._pinger: asyncio.TimerHandle | None = None
        self._wrote_at = 0.0
        self._pinged_at: float | None = None
        self.heard_at = 0.0
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def __aenter__(self) -> Publisher:
        loop = asyncio.get_running_loop()
        target = self._target
        context = ssl.create_default_context() if target.tls else None
        self._connack = loop.create_future()
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport, _ = await loop.create_connection(
                    lambda: _Protocol(self), target.host, target.port, ssl=context
                )
                self._transport = transport  # type: ignore[assignment]
                self._write(connect_packet(self._client_id, self._keepalive, target.username, target.password))
                code = await asyncio.shield(self._connack)
        except (OSError, TimeoutError) as exc:
            self._close()
            raise aiomqtt.MqttError(f"could not connect to {target.host}:{target.port}: {exc or 'timed out'}") from exc
        if code != 0:
            self._close()
            raise aiomqtt.MqttError(f"the broker refused the connection: {_REFUSED.get(code, f'code {code}')}")
        self._schedule_ping()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_DISCONNECT)
        self._close()
        if not self.gone.done():
            self.gone.set_result(None)

    async def publish(self, messages: Sequence[tuple[str, bytes]], within: float) -> list[bool]:
        """Publish ``(topic, body)`` pairs at QoS 1, in order; for each, whether its PUBACK came ``within`` seconds."""
        if not messages:
            return []
        if self.gone.done() or self._transport is None:
            return [False] * len(messages)
        ids = [self._packet_id() for _ in messages]
        packets = b"".join(publish_packet(topic, packet_id, body) for (topic, body), packet_id in zip(messages, ids, strict=True))
        self._outstanding = set(ids)
        self._all_in = asyncio.get_running_loop().create_future()
        self._write(packets)
        await asyncio.wait([self._all_in, self.gone], timeout=within, return_when=asyncio.FIRST_COMPLETED)
        outstanding, self._outstanding, self._all_in = self._outstanding, set(), None
        if outstanding:
            self.fail(f"{len(outstanding)} of {len(messages)} messages not acknowledged within {within:.0f}s")
        return [packet_id not in outstanding for packet_id in ids]

    # Called by the protocol -------------------------------------------------------------------

    def connack(self, code: int) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(code)

    def acknowledged(self, packet_id: int) -> None:
        outstanding = self._outstanding
        outstanding.discard(packet_id)
        if not outstanding and self._all_in is not None and not self._all_in.done():
            self._all_in.set_result(None)

    def fail(self, why: str) -> None:
        """Drop the connection: whatever is unconfirmed stays unconfirmed."""
        if not self.gone.done():
            self.gone.set_exception(aiomqtt.MqttError(why))
            # Whoever waits learns it from the unconfirmed messages, not from this exception.
            self.gone.exception()
        self._close()

    def lost(self, exc: Exception | None) -> None:
        self.fail(f"connection to the broker lost: {exc}" if exc else "the broker closed the connection")
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(ConnectionResetError("the broker closed the connection before CONNACK"))

    # Inside -----------------------------------------------------------------------------------

    def _packet_id(self) -> int:
        self._next_id = self._next_id % _MAX_PACKET_ID + 1
        return self._next_id

    def _write(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)
        self._wrote_at = time.monotonic()

    def _schedule_ping(self) -> None:
        self._pinger = asyncio.get_running_loop().call_later(self._keepalive / 2, self._ping)

    def _ping(self) -> None:
        if self.gone.done():
            return
        now = time.monotonic()
        if self._pinged_at is not None and self.heard_at < self._pinged_at and now - self._pinged_at >= self._keepalive:
            self.fail(f"no answer from the broker for {self._keepalive}s")
            return
        if now - self._wrote_at >= self._keepalive / 2 and (self._pinged_at is None or self.heard_at >= self._pinged_at):
            self._write(_PINGREQ)
            self._pinged_at = now
        self._schedule_ping()

    def _close(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.close()
