"""The MQTT ingest loop: batches of messages, committed, then acknowledged, then broadcast."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
import time
import uuid
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import msgspec
from sqlalchemy.exc import SQLAlchemyError

from naboom.ingest.pipeline import IngestPipeline, PartlyStored
from naboom.ingest.schemas import Envelope, Outcome, Verdict
from naboom.ingest.service import Stored
from naboom.logs import request_id
from naboom.operations.instruments import INGEST_BATCH_SIZE
from naboom.outbox.messages import received_acks
from naboom.outbox.publisher import publish_packet
from naboom.settings import Settings

log = logging.getLogger(__name__)

# Device acks as compact JSON, as the outbox bridge sends its messages.
_encode = msgspec.json.Encoder().encode


# MQTT 3.1.1 PUBACK: type, remaining length 2, packet id.
_PUBACK = struct.Struct("!BBH")
_PUBACK_TYPE = 0x40


class ReadAhead:
    """paho's socket, read in chunks: paho itself asks for a packet's bytes a few at a time.

    paho reads a packet with three or more ``recv`` calls (its type byte, each byte of its
    length, then the rest), and aiomqtt's reader callback handles one packet per wake-up of
    the event loop. Flat out that was a system call per few dozen bytes and a loop iteration
    per SOS. This wrapper takes up to ``CHUNK`` bytes per system call and serves paho's small
    reads from them; ``pending()`` (which aiomqtt already asks of TLS sockets after each
    packet) tells aiomqtt's callback to go on reading packets until the chunk is used up.

    One chunk per wake-up: once a chunk is used up, the next read of the same wake-up raises
    ``BlockingIOError`` instead of reading the socket again (paho keeps the part-read packet),
    and the callback returns at its next ``pending()``. Whatever is left is still in the
    socket, so the event loop wakes the callback again after the loop's other work: a flood
    cannot keep the loop in the reader while database replies wait. Everything else is the
    wrapped socket's own.

    The broker's PUBACKs for the ingest's own publishes (the devices' acks, whose packet ids
    are in ``own``) stop here: paho would decode each through its whole packet machinery only
    to find no message of its own waiting. The wrapper follows paho through the stream (it
    reads every packet whole and in order) and, where paho is about to read a new packet,
    drops such PUBACKs whole; anything else, or a PUBACK cut by a chunk's end, goes to paho.
    """

    CHUNK = 16384
    __slots__ = ("_body", "_buffer", "_in_length", "_length", "_own", "_position", "_read", "_shift", "_sock")

    def __init__(self, sock: Any, own: set[int] | None = None) -> None:
        self._sock = sock
        self._own = own if own is not None else set()
        self._buffer = b""
        self._position = 0
        # A chunk was read in this wake-up of the reader callback.
        self._read = False
        # Where paho is in the current packet: reading its length bytes, or this many body bytes to go.
        self._in_length = False
        self._length = self._shift = self._body = 0

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes: what the chunk has left, else a new chunk (once per wake-up)."""
        while True:
            start, buffer = self._position, self._buffer
            if start >= len(buffer):
                if self._read:
                    raise BlockingIOError("the rest waits for the next turn of the event loop")
                buffer = self._sock.recv(self.CHUNK)
                if not buffer:
                    return buffer
                self._buffer, start, self._read = buffer, 0, True
            if self._own and not self._body and not self._in_length:
                start = self._drop_own_pubacks(buffer, start)
                if start >= len(buffer):
                    self._position = start
                    continue
            data = buffer[start : start + size]
            self._position = start + len(data)
            if self._body >= len(data):
                self._body -= len(data)
            else:
                self._follow(data)
            return data

    def _drop_own_pubacks(self, buffer: bytes, start: int) -> int:
        """Past the whole PUBACKs (MQTT 3.1.1: 0x40, length 2, packet id) of ``own`` ids at ``start``."""
        own = self._own
        while len(buffer) - start >= 4 and buffer[start] == _PUBACK_TYPE and buffer[start + 1] == 2:
            packet_id = (buffer[start + 2] << 8) | buffer[start + 3]
            if packet_id not in own:
                break
            own.discard(packet_id)
            start += 4
        return start

    def _follow(self, data: bytes) -> None:
        """Where the packets paho just took bytes of end: a type byte, the length's bytes, the body."""
        i, n = 0, len(data)
        while i < n:
            if self._body:
                step = min(self._body, n - i)
                self._body -= step
                i += step
            elif self._in_length:
                byte = data[i]
                i += 1
                self._length += (byte & 0x7F) << self._shift
                self._shift += 7
                if not byte & 0x80:
                    self._in_length, self._body = False, self._length
            else:
                i += 1
                self._in_length, self._length, self._shift = True, 0, 0

    def pending(self) -> int:
        """Bytes read and not yet handed to paho (and any the wrapped socket holds).

        aiomqtt's callback stops when this is 0: the next wake-up may read the socket again.
        """
        held = len(self._buffer) - self._position
        if held <= 0:
            held, self._read = 0, False
        return held + (self._sock.pending() if hasattr(self._sock, "pending") else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class ManualAck:
    """The one place that reaches into aiomqtt's internals: its paho client, its socket and its queue.

    aiomqtt 2 lets paho acknowledge a QoS 1 message as soon as it is queued; with manual
    acknowledgement the PUBACK goes out only when :meth:`ack` is called, after the commit.
    Each connection's socket is read through :class:`ReadAhead`. :meth:`ack_many` also sends
    the devices' acks, ahead of the PUBACKs on the same connection.
    """

    def __init__(self, client: aiomqtt.Client) -> None:
        self._paho = client._client  # noqa: SLF001
        self._paho.manual_ack_set(True)
        # Packet ids of the acks this connection published whose PUBACK has not come yet.
        self._own: set[int] = set()
        create_socket = self._paho._create_socket  # noqa: SLF001
        self._paho._create_socket = lambda: ReadAhead(create_socket(), self._own)  # type: ignore[method-assign]  # noqa: SLF001
        self._queue: asyncio.Queue[aiomqtt.Message] = client._queue  # noqa: SLF001

    def take_queued(self, batch: list[aiomqtt.Message], limit: int) -> None:
        """Move messages aiomqtt has already queued onto ``batch``, up to ``limit`` in all, without waiting.

        ``anext(client.messages)`` starts a task and an ``asyncio.wait`` for every message (to
        notice a disconnect while it waits); for messages already queued that was about 6 % of
        the serving process's time flat out. These wait for nothing.
        """
        queue = self._queue
        while len(batch) < limit and not queue.empty():
            batch.append(queue.get_nowait())

    def ack(self, message: aiomqtt.Message) -> None:
        """Send the PUBACK for one message."""
        if message.qos > 0:
            self._paho.ack(message.mid, message.qos)

    def ack_many(self, messages: Sequence[aiomqtt.Message], publish: Sequence[tuple[str, bytes]] = ()) -> None:
        """Publish ``(topic, body)`` pairs at QoS 1, then send the PUBACKs of a batch, all in one write.

        paho writes each queued packet with a send() of its own: a batch's worth of 4-byte
        PUBACKs cost as many system calls as the rest of the batch's I/O. Queued as one packet
        the broker reads the same bytes (MQTT 3.1.1 PUBACK: type, length 2, message id), sent
        with one call. QoS 2 (never used by devices) keeps paho's own handshake.

        ``publish`` is the batch's device acks. The broker handles a connection's packets in
        the order they arrive, so it has taken every ack before it takes the PUBACK that ends
        its SOS's delivery: should this process die in between, the broker still holds the SOS
        for this session and delivers it again, and its ack goes out again as a duplicate's.
        No outbox row is needed for them. Their packet ids come from paho's own counter (never
        one in use by its subscribe); the broker's PUBACKs for them stop in :class:`ReadAhead`
        (paho would ignore them, at a cost), and nothing resends them after a reconnect (the
        SOS's redelivery does).
        """
        out = bytearray()
        if publish:
            next_id, own = self._paho._mid_generate, self._own  # noqa: SLF001
            for topic, body in publish:
                packet_id = next_id()
                own.add(packet_id)
                out += publish_packet(topic, packet_id, body)
        for message in messages:
            if message.qos == 1:
                out += _PUBACK.pack(_PUBACK_TYPE, 2, message.mid)
            elif message.qos > 1:
                self.ack(message)
        if out:
            self._paho._packet_queue(_PUBACK_TYPE, bytes(out), 0, 1)  # noqa: SLF001



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


class Announcer:
    """Broadcasts committed batches in commit order while the ingest goes on with the next batch.

    Waiting on Redis would otherwise hold up the next batch's database work. The broadcasts are
    chained, each after the one before, and at most ``depth`` wait at once (back-pressure when
    Redis is slow). A failed broadcast is logged and counted: its batch is committed and
    acknowledged already, and the outbox sweep queues any SMS alert it finds missing.
    """

    def __init__(self, pipeline: IngestPipeline, depth: int = 4) -> None:
        self._pipeline = pipeline
        self._depth = depth
        self._chain: deque[asyncio.Task[None]] = deque()

    async def submit(self, stored: Stored) -> None:
        """Queue the broadcast of a committed batch; waits only while ``depth`` are still going."""
        while self._chain and self._chain[0].done():
            self._chain.popleft()
        if len(self._chain) >= self._depth:
            await asyncio.wait({self._chain[0]})
            self._chain.popleft()
        before = self._chain[-1] if self._chain else None
        self._chain.append(asyncio.create_task(self._announce(before, stored)))

    async def _announce(self, before: asyncio.Task[None] | None, stored: Stored) -> None:
        if before is not None:
            await asyncio.wait({before})
        try:
            await self._pipeline.announce(stored)
        except Exception:
            log.exception("could not broadcast a committed batch of %d incidents", len(list(stored)))

    async def drain(self) -> None:
        """Wait for every queued broadcast (a graceful stop)."""
        while self._chain:
            await asyncio.wait({self._chain.popleft()})

    def cancel(self) -> None:
        """Drop the queued broadcasts (a stop that ran out of time)."""
        while self._chain:
            self._chain.popleft().cancel()


# Messages of unconfirmed batches kept to recognise their redelivery (see MqttIngest._announce_unsure).
UNSURE_MAX = 20_000


class StoreUnavailable(Exception):
    """The database refused a batch; the connection is dropped so the broker redelivers it."""


class MqttIngest:
    """Owns the subscription; reconnects with back-off until asked to stop.

    A stop (SIGTERM) is graceful: no further message is taken from the connection, the batch in
    hand is committed and acknowledged, then the client disconnects cleanly. Whatever the broker
    delivered but nobody acknowledged stays in the persistent session for the next start.
    """

    # How often an idle loop wakes up to show it is alive (``heartbeat``) and to look for a stop.
    TICK_SECONDS = 1.0

    def __init__(self, settings: Settings, pipeline: IngestPipeline) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self.connected = asyncio.Event()
        self.last_batch_at: datetime | None = None
        # time.monotonic() of the loop's last iteration, busy or idle; a stale value means a stuck loop.
        self.heartbeat: float = time.monotonic()
        self._stopping = asyncio.Event()
        self._held = 0
        self._announcer = Announcer(pipeline)
        # Messages of batches whose commit failed after it may have reached the database (its
        # answer lost) -> when they were taken. Their redelivery answers as duplicates of what
        # did commit, which nobody has broadcast: see :meth:`_announce_unsure`.
        self._unsure: dict[bytes, datetime] = {}
        # Incidents of those batches broadcast already (the lanes that did commit).
        self._unsure_broadcast: set[uuid.UUID] = set()

    def request_stop(self) -> None:
        """Stop taking messages; :meth:`run` returns once the batch in hand is acknowledged."""
        if not self._stopping.is_set():
            log.info("ingest stopping: no longer taking messages (%d held)", self._held)
            self._stopping.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stopping.is_set()

    def _client(self) -> aiomqtt.Client:
        # A persistent session: what arrives while we are away is queued for us.
        return self._settings.mqtt_target.client(self._settings.mqtt_client_id, clean_session=False)  # type: ignore[no-any-return]

    async def run(self) -> None:
        """Connect, subscribe and consume until :meth:`request_stop` (or cancellation)."""
        backoff = Backoff()
        topic = self._settings.ingest_topic
        target = self._settings.mqtt_target
        while not self.stopping:
            client = self._client()
            acker = ManualAck(client)
            delay = 0.0
            try:
                log.info("ingest connecting to the MQTT broker at %s:%d", target.host, target.port)
                async with client:
                    await client.subscribe(topic, qos=1)
                    log.info("ingest subscribed to %s as %s", topic, self._settings.mqtt_client_id)
                    self.connected.set()
                    backoff.reset()
                    await self._consume(client, acker)
                # Leaving the ``async with`` sent DISCONNECT: the session and its queue stay on the broker.
                log.info("ingest disconnected cleanly; unacknowledged messages stay queued in the broker session")
            except StoreUnavailable as exc:
                delay = backoff.next_delay()
                log.warning(
                    "ingest could not store a batch (%s); left it unacknowledged for redelivery, reconnecting in %.1fs",
                    exc, delay,
                )
            except aiomqtt.MqttError as exc:
                delay = backoff.next_delay()
                log.warning(
                    "ingest lost the MQTT broker at %s:%d (%s); reconnecting in %.1fs",
                    target.host, target.port, exc, delay,
                )
            except Exception:
                # Unacknowledged messages come back after the reconnect; the loop itself must not die.
                delay = backoff.next_delay()
                log.exception("ingest failed unexpectedly; reconnecting in %.1fs", delay)
            self.connected.clear()
            await self._pause(delay)
        await self._announcer.drain()
        log.info("ingest stopped")

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, beating the heartbeat, unless a stop comes first."""
        deadline = time.monotonic() + delay
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            self.heartbeat = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), min(left, self.TICK_SECONDS))

    async def _consume(self, client: aiomqtt.Client, acker: ManualAck) -> None:
        messages = client.messages
        limit = self._settings.mqtt_batch_size
        # One pending read, kept across idle ticks: cancelling a read that has just taken a
        # message off aiomqtt's queue would strand that message until the next connection.
        pending: asyncio.Task[aiomqtt.Message] | None = None
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            while not self.stopping:
                self.heartbeat = time.monotonic()
                if pending is None:
                    pending = asyncio.ensure_future(anext(messages))
                done, _ = await asyncio.wait({pending, stop}, timeout=self.TICK_SECONDS, return_when=asyncio.FIRST_COMPLETED)
                if pending not in done:
                    continue
                batch, pending = [pending.result()], None
                if not self.stopping:
                    acker.take_queued(batch, limit)
                self._held = len(batch)
                try:
                    await self.handle(batch, acker)
                finally:
                    self._held = 0
                if self.stopping:
                    log.info("ingest stopping: held batch of %d committed and acknowledged", len(batch))
                    return
            log.info("ingest stopping: held batch of 0 committed and acknowledged")
        finally:
            stop.cancel()
            if pending is not None:
                # Not taken: if the broker sent it, it is unacknowledged and comes back in the session.
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await pending

    async def handle(self, batch: list[aiomqtt.Message], acker: ManualAck) -> None:
        """Store a batch in one transaction, then acknowledge every message (its device's ack first), then queue its broadcast."""
        mids = [str(msg.mid) for msg in batch]
        token = request_id.set(f"mqtt:{mids[0]}" if len(mids) == 1 else f"mqtt:{mids[0]}..{mids[-1]}")
        try:
            await self._handle(batch, acker)
        finally:
            request_id.reset(token)

    async def _handle(self, batch: list[aiomqtt.Message], acker: ManualAck) -> None:
        now = datetime.now(UTC)
        envelopes = [
            Envelope(body=bytes(msg.payload), transport="mqtt", topic=msg.topic.value, received_at=now)  # type: ignore[arg-type]
            for msg in batch
        ]
        try:
            outcomes, stored = await self._pipeline.store(envelopes, device_acks=False)
        except PartlyStored as exc:
            # What committed is broadcast now (its redelivery will be duplicates, announced by
            # nobody); the batch stays unacknowledged, so the rest comes again.
            await self._announcer.submit(exc.stored)
            if isinstance(exc.cause, (SQLAlchemyError, OSError)):
                self._remember_unsure(envelopes)
                self._unsure_broadcast.update(incident.id for incident in exc.stored)
                raise StoreUnavailable(f"database: {exc.cause.__class__.__name__}: {exc.cause}") from exc.cause
            raise
        except (SQLAlchemyError, OSError) as exc:
            self._remember_unsure(envelopes)
            raise StoreUnavailable(f"database: {exc.__class__.__name__}: {exc}") from exc
        acker.ack_many(batch, [(topic, _encode(payload)) for topic, payload, _ in received_acks(outcomes)])
        INGEST_BATCH_SIZE.observe(len(batch))
        self.last_batch_at = now
        await self._announcer.submit(stored)
        if self._unsure:
            await self._announce_unsure(envelopes, outcomes)

    def _remember_unsure(self, envelopes: Sequence[Envelope]) -> None:
        """Keep a failed batch's messages: its commit may have happened all the same."""
        for envelope in envelopes:
            self._unsure[envelope.body] = envelope.received_at
        # Bounded: the redelivery comes at the next connection, long before this many fail.
        while len(self._unsure) > UNSURE_MAX:
            del self._unsure[next(iter(self._unsure))]

    async def _announce_unsure(self, envelopes: Sequence[Envelope], outcomes: Sequence[Outcome]) -> None:
        """Broadcast the incidents a failed batch committed after all, once its redelivery shows them.

        The database may have committed a batch whose answer never came (the connection dropped
        at COMMIT): nothing was acknowledged or broadcast, the broker delivers it again, and it
        is answered as duplicates. Those incidents would stay off the operators' live map until
        their next reload, so they are broadcast now, as they are: ``incident.created`` for one
        the failed batch opened, ``incident.updated`` for one it added to. (A restart needs none
        of this: every monitor reloads its lists when its feed reconnects.)
        """
        found: dict[uuid.UUID, datetime] = {}
        for envelope, outcome in zip(envelopes, outcomes, strict=True):
            taken = self._unsure.pop(envelope.body, None)
            if taken is not None and outcome.verdict == Verdict.DUPLICATE and outcome.incident_id is not None:
                found.setdefault(outcome.incident_id, taken)
        for incident_id in self._unsure_broadcast & found.keys():
            del found[incident_id]
        if not self._unsure:
            self._unsure_broadcast.clear()
        if not found:
            return
        try:
            incidents = await self._pipeline.incidents(list(found))
        except (SQLAlchemyError, OSError):
            log.exception("could not read %d incidents of a batch whose commit was unconfirmed", len(found))
            return
        recovered = Stored(
            created=[i for i in incidents if i.created_at == found[i.id]],
            updated=[(i, None) for i in incidents if i.created_at != found[i.id]],
        )
        log.warning(
            "ingest: a batch whose commit was unconfirmed had committed; broadcasting its %d incidents now",
            len(incidents),
        )
        await self._announcer.submit(recovered)

    async def shutdown(self, task: asyncio.Task[None], grace: float) -> None:
        """Request a stop and wait for ``task`` (running :meth:`run`) at most ``grace`` seconds."""
        self.request_stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            # Whatever it held is unacknowledged: the broker delivers it again at the next start.
            log.error("ingest did not stop within %.1fs; cutting it off", grace)
            task.cancel()
            self._announcer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except Exception:
            log.exception("ingest ended with an error while stopping")
