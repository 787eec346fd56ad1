"""The ingest's socket is read in chunks: paho's byte-sized reads come from one system call.

On a real socket pair: small reads are served from one chunk, ``pending()`` says what is held,
an empty socket still raises ``BlockingIOError`` and a closed one still reads ``b""``; the
broker's PUBACKs for the ingest's own acks are dropped whole where a packet starts, whatever
the chunk size, and every other packet reaches paho unchanged. Through a
real Mosquitto: a burst of QoS 1 messages, some bigger than a chunk, reaches the ingest's
client whole and in order, and the acknowledgements sent after it go through (nothing comes
back in the persistent session).
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import aiomqtt
import pytest

from naboom.ingest.mqtt import ManualAck, ReadAhead
from tests.support import MQTT_HOST, MQTT_PORT, drop_mqtt_session, publisher


class _Counting:
    """A real socket that counts its ``recv`` calls."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.calls = sock, 0

    def recv(self, size: int) -> bytes:
        self.calls += 1
        return self.sock.recv(size)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    yield reader, writer
    reader.close()
    writer.close()


def test_small_reads_come_from_one_chunk_and_pending_counts_what_is_held(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    reader, writer = pair
    counting = _Counting(reader)
    wrapped = ReadAhead(counting)
    # Two MQTT-like packets in one write: a type byte, a length byte, the rest.
    writer.sendall(b"\x30\x05hello\x30\x03abc")
    assert wrapped.recv(1) == b"\x30"
    assert wrapped.pending() == 11
    assert wrapped.recv(1) == b"\x05"
    assert wrapped.recv(5) == b"hello"
    assert [wrapped.recv(1), wrapped.recv(1)] == [b"\x30", b"\x03"]
    # More asked for than is held: what is held, as a short read of a socket would be.
    assert wrapped.recv(10) == b"abc"
    assert wrapped.pending() == 0
    assert counting.calls == 1
    with pytest.raises(BlockingIOError):
        wrapped.recv(1)
    writer.close()
    assert wrapped.recv(1) == b""


def test_one_chunk_per_wake_up_and_nothing_is_stranded(pair: tuple[socket.socket, socket.socket]) -> None:
    reader, writer = pair
    counting = _Counting(reader)
    wrapped = ReadAhead(counting)
    writer.sendall(b"a" * (ReadAhead.CHUNK + 10))
    # A packet bigger than what one chunk holds: the first read takes a chunk ...
    assert wrapped.recv(ReadAhead.CHUNK + 10) == b"a" * ReadAhead.CHUNK
    # ... and the rest of this wake-up finds nothing, though the socket holds more.
    with pytest.raises(BlockingIOError):
        wrapped.recv(10)
    assert counting.calls == 1
    # The reader callback ends at pending() == 0; the next wake-up reads the socket again.
    assert wrapped.pending() == 0
    assert wrapped.recv(10) == b"a" * 10
    assert counting.calls == 2


def _publish(topic: bytes, body: bytes) -> bytes:
    """A QoS 0 PUBLISH."""
    rest = len(topic).to_bytes(2, "big") + topic + body
    length, size = b"", len(rest)
    while True:
        size, digit = divmod(size, 128)
        length += bytes([digit | (0x80 if size else 0)])
        if not size:
            return b"\x30" + length + rest


def _puback(packet_id: int) -> bytes:
    return b"\x40\x02" + packet_id.to_bytes(2, "big")


def _read_like_paho(wrapped: ReadAhead, count: int | None = None) -> list[bytes]:
    """``count`` whole packets (or all until the socket closes), read as paho does: the type byte,
    each length byte, then the body in as many reads as it takes. A ``BlockingIOError`` ends a
    wake-up of the reader; the next one goes on where it stopped."""

    def recv(size: int) -> bytes:
        while True:
            try:
                return wrapped.recv(size)
            except BlockingIOError:
                assert wrapped.pending() == 0

    packets: list[bytes] = []
    while count is None or len(packets) < count:
        packet = recv(1)
        if not packet:
            break
        length, shift = 0, 0
        while True:
            byte = recv(1)
            packet += byte
            length += (byte[0] & 0x7F) << shift
            shift += 7
            if not byte[0] & 0x80:
                break
        while length:
            part = recv(length)
            assert part, "the stream ended inside a packet"
            packet += part
            length -= len(part)
        packets.append(packet)
    return packets


# A PUBACK of an ack of ours (5, 6, 7), one of a packet id that is not (9), a PINGRESP, and a
# PUBLISH (of a two-byte length) whose payload holds the bytes of one of our PUBACKs.
_OWN = {5, 6, 7}
_STREAM = [
    _publish(b"panic/ingest/a", b"x" * 40), _puback(5), _puback(9), b"\xd0\x00",
    _publish(b"panic/ingest/b", _puback(6) + b"y" * 150), _puback(6), _puback(7), _publish(b"panic/ingest/c", b"z"),
]
_PAHO_SEES = [p for p in _STREAM if p not in {_puback(i) for i in _OWN}]


def test_pubacks_of_our_own_acks_stop_at_packet_boundaries_and_everything_else_reaches_paho(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    reader, writer = pair
    own = set(_OWN)
    wrapped = ReadAhead(reader, own)
    writer.sendall(b"".join(_STREAM))
    assert _read_like_paho(wrapped, len(_PAHO_SEES)) == _PAHO_SEES
    # Each of ours was dropped once, whole; the PUBACK lookalike inside a payload was left alone.
    assert own == set()
    assert wrapped.pending() == 0


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 11, 64])
def test_with_any_chunk_size_paho_reads_the_same_packets_and_cut_pubacks_still_reach_it(
    pair: tuple[socket.socket, socket.socket], chunk: int
) -> None:
    reader, writer = pair

    class Small(ReadAhead):
        CHUNK = chunk

    own = set(_OWN)
    wrapped = Small(reader, own)
    writer.sendall(b"".join(_STREAM))
    writer.close()
    packets = _read_like_paho(wrapped)
    ours = {_puback(i) for i in _OWN}
    # A PUBACK of ours that a chunk's end cut goes to paho (which ignores it); nothing else changes.
    assert [p for p in packets if p not in ours] == _PAHO_SEES
    assert {int.from_bytes(p[2:], "big") for p in packets if p in ours} == own


def test_everything_else_is_the_wrapped_sockets(pair: tuple[socket.socket, socket.socket]) -> None:
    reader, writer = pair
    wrapped = ReadAhead(reader)
    assert wrapped.fileno() == reader.fileno()
    assert wrapped.send(b"x") == 1
    assert writer.recv(1) == b"x"


async def test_a_burst_reaches_the_ingest_client_whole_and_in_order_and_its_acks_go_through() -> None:
    topic = f"test/read-ahead/{uuid.uuid4().hex[:8]}"
    client_id = f"test-read-ahead-{uuid.uuid4().hex[:8]}"
    # Sizes around paho's reads and the chunk: tiny, typical SOS, and bigger than one chunk.
    bodies = [bytes([65 + i % 26]) * size for i, size in enumerate([1, 250, 300, ReadAhead.CHUNK + 1000, 7, 250] * 50)]

    def client() -> aiomqtt.Client:
        return aiomqtt.Client(MQTT_HOST, MQTT_PORT, identifier=client_id, clean_session=False)

    first = client()
    acker = ManualAck(first)
    received: list[Any] = []
    try:
        async with first:
            await first.subscribe(topic, qos=1)
            with publisher(MQTT_HOST, MQTT_PORT) as pub:
                for body in bodies:
                    pub.publish(topic, body, qos=1)
                async with asyncio.timeout(30):
                    async for message in first.messages:
                        received.append(message)
                        # The broker's in-flight window (20 by default) moves only as we acknowledge.
                        if len(received) % 10 == 0:
                            acker.ack_many(received[-10:])
                        if len(received) == len(bodies):
                            break
            assert isinstance(first._client._sock, ReadAhead)
            assert [bytes(m.payload) for m in received] == bodies
            # A round trip after the acknowledgements: the broker has read them once this returns.
            await first.unsubscribe(topic)

        second = client()
        ManualAck(second)
        async with second:
            await second.subscribe(topic, qos=1)
            # Whatever the session still held would arrive before the answer to this ping.
            marker = f"{topic}/marker"
            await second.subscribe(marker, qos=1)
            await second.publish(marker, b"end", qos=1)
            async with asyncio.timeout(10):
                message = await anext(second.messages)
            assert message.topic.value == marker
    finally:
        drop_mqtt_session(client_id)
