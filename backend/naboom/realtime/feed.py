"""The live feed: per-region event ids, fan-out through Litestar channels, bounded replay.

A channel message carries one or more events: its first line is the first event's id, then one
line per event, ``<type>\t<json of the data>`` (msgspec escapes tabs and newlines inside JSON
strings); the n-th event's id is ``first + n``. The data is encoded once per broadcast, split
into SSE frames and WebSocket texts (and the ASGI messages carrying them) once per process, and
a burst of incidents costs one publish per region, not one per incident. A process subscribes
once per region and writes each broadcast to all of its connections in one step (``Sink``).

Ids are handed out in the same step that appends the message to the channel (one Lua script on
Redis, one uninterrupted step of the event loop in memory), so every subscriber sees a region's
events in id order even when several API processes publish at once. ``Last-Event-ID`` replay
and the live de-duplication rely on that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, cast

import msgspec
from litestar.channels import ChannelsBackend, ChannelsPlugin, Subscriber
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.channels.backends.redis import RedisChannelsStreamBackend
from litestar.types import HTTPResponseBodyEvent, WebSocketSendEvent
from redis.asyncio import Redis

from naboom.settings import Settings

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()

# Ids grow across processes and restarts: max(previous + 1, now in microseconds). ARGV[2] ids are
# reserved at once and the message (first id, newline, ARGV[3]) is appended to the stream KEYS[2]
# in the same script, in the entry format of Litestar's RedisChannelsStreamBackend (fields
# ``data`` and ``channel``), capped and expiring like its own publish.
_APPEND_LUA = """
local now = tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local first = math.max(cur + 1, now)
redis.call('SET', KEYS[1], string.format('%.0f', first + tonumber(ARGV[2]) - 1))
local data = string.format('%.0f', first) .. '\\n' .. ARGV[3]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'data', data, 'channel', ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return string.format('%.0f', first)
"""


# How long one XREAD of the live streams waits for a new entry (see make_feed).
STREAM_BLOCK_MS = 100

# A region's live stream outlives a quiet day, so a reconnecting monitor can still replay.
LIVE_TTL_MS = 24 * 3600 * 1000


def make_feed(settings: Settings, redis: Redis | None) -> tuple[ChannelsPlugin, LiveFeed]:
    """The channels plugin and the live feed on it: Redis streams when Redis is set, else memory."""
    backend: ChannelsBackend
    if redis is not None:
        backend = RedisChannelsStreamBackend(
            history=settings.stream_history,
            redis=redis,
            stream_ttl=LIVE_TTL_MS,
            key_prefix=f"{settings.redis_prefix}:live",
            # The backend's XREAD blocks this long, and returns as soon as an entry arrives: its
            # default (1 ms) is a thousand round trips a second to Redis while nothing happens,
            # CPU the ingest wants. A region newly subscribed meanwhile is read from the next
            # XREAD on (from its stream's start: nothing is missed, at most this much later).
            stream_sleep_no_subscriptions=STREAM_BLOCK_MS,
        )
    else:
        backend = KeepHistoryMemoryBackend(history=settings.stream_history)
    channels = ChannelsPlugin(backend=backend, arbitrary_channels_allowed=True, subscriber_max_backlog=10_000)
    feed_log: FeedLog
    if isinstance(backend, RedisChannelsStreamBackend) and redis is not None:
        feed_log = RedisFeedLog(
            redis, backend, history=settings.stream_history, ttl_ms=LIVE_TTL_MS, prefix=settings.redis_prefix
        )
    else:
        feed_log = MemoryFeedLog(channels)
    return channels, LiveFeed(channels, feed_log, settings.stream_history)


@asynccontextmanager
async def open_feed(settings: Settings, redis: Redis | None) -> AsyncIterator[LiveFeed]:
    """A live feed for a process without the Litestar app (a worker): publishes like the API does."""
    channels, feed = make_feed(settings, redis)
    async with channels:
        try:
            yield feed
        finally:
            await feed.aclose()


def channel_for(region: str) -> str:
    """The channel that carries one region's live events."""
    return f"region.{region}"


class FeedLog(Protocol):
    """Numbers a region's events and appends them to its channel, in one indivisible step."""

    async def append(self, region: str, count: int, lines: bytes) -> int:
        """Append ``count`` events (``lines``, one per event) to ``region``'s channel; returns the first id."""
        ...


class MemoryFeedLog:
    """Ids and fan-out for a single process (embedded mode)."""

    def __init__(self, channels: ChannelsPlugin) -> None:
        self._channels = channels
        self._last: dict[str, int] = {}

    def reserve(self, region: str, count: int) -> int:
        """Reserve ``count`` consecutive ids for ``region``; returns the first."""
        first = max(self._last.get(region, 0) + 1, time.time_ns() // 1000)
        self._last[region] = first + count - 1
        return first

    async def append(self, region: str, count: int, lines: bytes) -> int:
        """Append ``count`` events to ``region``'s channel; returns the first id."""
        # The memory backend queues the message without suspending, so nothing runs between
        # reserving the ids and appending the message: messages are in id order.
        first = self.reserve(region, count)
        await self._channels.wait_published(b"%d\n%s" % (first, lines), channel_for(region))
        return first


class RedisFeedLog:
    """Ids shared by every API process, appended to Litestar's Redis stream in the same script."""

    def __init__(
        self, redis: Redis, backend: RedisChannelsStreamBackend, *, history: int, ttl_ms: int, prefix: str = "naboom"
    ) -> None:
        self._prefix = prefix
        self._script = redis.register_script(_APPEND_LUA)
        self._backend = backend
        self._history = history
        self._ttl_ms = ttl_ms

    async def append(self, region: str, count: int, lines: bytes) -> int:
        """Append ``count`` events to ``region``'s stream; returns the first id."""
        channel = channel_for(region)
        keys = [f"{self._prefix}:event-id:{region}", self._backend._make_key(channel)]  # noqa: SLF001
        now = time.time_ns() // 1000
        first = await self._script(keys=keys, args=[now, count, lines, self._history, self._ttl_ms, channel])
        return int(first)


class KeepHistoryMemoryBackend(MemoryChannelsBackend):
    """Litestar's memory backend, except that a channel's history outlives its last subscriber.

    The stock backend forgets the history when the last subscriber leaves, so the region's only
    watcher, reconnecting with ``Last-Event-ID``, would miss what was sent to its dead connection.
    The history stays bounded (``history`` entries per channel).
    """

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        """Stop delivering ``channels``; keep their history."""
        self._channels -= set(channels)


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One event as subscribers receive it, encoded once for everyone.

    ``json`` is the data with ``type`` and ``event_id`` first; ``sse`` is its whole SSE frame and
    ``text`` the WebSocket message; ``http_body`` and ``ws_send`` are the ASGI messages that carry
    them: a broadcast to thousands of connections hands these same objects to each of them.
    """

    event_id: int
    type: str
    json: bytes
    sse: bytes
    text: str
    http_body: HTTPResponseBodyEvent
    ws_send: WebSocketSendEvent

    @classmethod
    def numbered(cls, event_id: int, type_: bytes, body: bytes) -> LiveEvent:
        """The event ``event_id`` of ``type_`` whose data encodes to the JSON object ``body``."""
        head = b'{"type":"%s","event_id":%d' % (type_, event_id)
        data = head + (b"}" if body == b"{}" else b"," + body[1:])
        frame = b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, type_, data)
        text = data.decode()
        return cls(
            event_id,
            type_.decode(),
            data,
            frame,
            text,
            {"type": "http.response.body", "body": frame, "more_body": True},
            {"type": "websocket.send", "text": text, "bytes": None},
        )

    @classmethod
    def decode_all(cls, raw: bytes) -> list[LiveEvent]:
        """The events of one channel message."""
        first, *lines = raw.split(b"\n")
        start = int(first)
        events = []
        for n, line in enumerate(lines):
            type_, body = line.split(b"\t", 1)
            events.append(cls.numbered(start + n, type_, body))
        return events


class _Decoded:
    """The events of the latest channel messages, decoded by the first subscriber that reads them.

    Every subscriber of a process is handed the same message object, so all but the first find it
    here: one decode and one encoding per broadcast, not one per connection.
    """

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._events: dict[bytes, tuple[LiveEvent, ...]] = {}

    def __call__(self, raw: bytes) -> tuple[LiveEvent, ...]:
        events = self._events.get(raw)
        if events is None:
            events = self._events[raw] = tuple(LiveEvent.decode_all(raw))
            if len(self._events) > self._size:
                del self._events[next(iter(self._events))]  # the oldest
        return events


decoded = _Decoded()


def encode_lines(items: Sequence[tuple[str, dict[str, Any]]]) -> bytes:
    """The event lines of a channel message (everything but the first id)."""
    return b"\n".join(b"%s\t%s" % (type_.encode(), _encoder.encode(data)) for type_, data in items)


class LiveFeed:
    """Publishes events to a region's subscribers and replays what a reconnecting client missed.

    Each process holds one channel subscription per region it has connections for (a ``_Hub``),
    whatever their number: the hub hands every broadcast to each connection's ``Sink``, which
    writes it at once (see ``Sink``).
    """

    def __init__(self, channels: ChannelsPlugin, log: FeedLog, history: int, backlog: int = 10_000) -> None:
        self._channels = channels
        self._log = log
        self._history = history
        self._backlog = backlog
        self._hubs: dict[str, _Hub] = {}
        # Connections whose handler has not finished yet (their last frame, a close, may be unsent).
        self._open = 0
        self._none_open = asyncio.Event()
        self._none_open.set()

    @contextmanager
    def connection(self) -> Iterator[None]:
        """Held by a live connection's handler until it has sent its last frame (see :meth:`closed`)."""
        self._open += 1
        self._none_open.clear()
        try:
            yield
        finally:
            self._open -= 1
            if not self._open:
                self._none_open.set()

    async def closed(self) -> None:
        """Until no connection's handler is still running.

        A shutdown ends every connection (:meth:`end_all`) and waits here (bounded) before the
        server drops what is left: a WebSocket closed by its handler carries the reason
        ("reconnect"); one the server drops gets a bare 1012.
        """
        await self._none_open.wait()

    async def publish(self, region: str, type_: str, data: dict[str, Any]) -> int:
        """Broadcast one event to ``region``; returns its event id."""
        (event_id,) = await self.publish_many(region, [(type_, data)])
        return event_id

    async def publish_many(self, region: str, items: Sequence[tuple[str, dict[str, Any]]]) -> range:
        """Broadcast several events to ``region`` in one channel message; returns their ids, in the given order."""
        if not items:
            return range(0)
        lines = encode_lines(items)
        first = await self._log.append(region, len(items), lines)
        return range(first, first + len(items))

    @asynccontextmanager
    async def subscribe(self, region: str, last_event_id: int | None) -> AsyncIterator[Replay]:
        """Subscribe first, then read history, so nothing falls between the two.

        Without ``last_event_id`` the client starts at the newest event already broadcast.
        """
        channel = channel_for(region)
        backend = self._channels._backend  # noqa: SLF001
        after = last_event_id
        if after is None:
            # A new client wants what happens from now on. Litestar's Redis stream backend reads a
            # stream it starts listening to from the beginning, passing old events off as live:
            # whatever is in the history before we subscribe is old, and its newest entry holds
            # the highest id (ids are appended in order).
            recent = await backend.get_history(channel, 1)
            after = max((e.event_id for raw in recent for e in decoded(raw)), default=0)
        hub = await self._hub(region)
        sink = Sink(after, self._backlog)
        hub.sinks.add(sink)
        try:
            history = await backend.get_history(channel, self._history)
            events = sorted((e for raw in history for e in decoded(raw)), key=lambda e: e.event_id)
            missed = [e for e in events if e.event_id > after]
            # A full history that starts after the client's last id may have lost events.
            gap = (
                last_event_id is not None
                and len(history) >= self._history
                and bool(events)
                and events[0].event_id > last_event_id
            )
            yield Replay(missed=missed, gap=gap, sink=sink)
        finally:
            hub.sinks.discard(sink)
            await sink.close()
            if not hub.sinks:
                # The last connection left: hold no subscription for nobody (a new one starts
                # a new hub; the channels keep the history either way).
                self._forget(hub)
                await hub.stop(self._channels)

    async def _hub(self, region: str) -> _Hub:
        hub = self._hubs.get(region)
        if hub is None:
            # Registered before it subscribes, so concurrent first subscribers share it.
            hub = self._hubs[region] = _Hub(self, region)
            hub.start(self._channels)
        await asyncio.shield(hub.ready)  # a hub that failed to subscribe has forgotten itself
        return hub

    def end_all(self) -> None:
        """End every live connection of this process (shutdown): clients reconnect elsewhere at once."""
        for hub in self._hubs.values():
            for sink in hub.sinks:
                sink.end()

    async def aclose(self) -> None:
        """End every connection and stop the hubs."""
        self.end_all()
        hubs, self._hubs = list(self._hubs.values()), {}
        for hub in hubs:
            await hub.stop(self._channels)

    def _forget(self, hub: _Hub) -> None:
        if self._hubs.get(hub.region) is hub:
            del self._hubs[hub.region]


class _Hub:
    """A process's one subscription to a region: every broadcast goes to each sink in one step."""

    def __init__(self, feed: LiveFeed, region: str) -> None:
        self._feed = feed
        self.region = region
        self.sinks: set[Sink] = set()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None
        self._subscriber: Subscriber | None = None

    def start(self, channels: ChannelsPlugin) -> None:
        self._task = asyncio.create_task(self._run(channels), name=f"live-feed-{self.region}")

    async def stop(self, channels: ChannelsPlugin) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._subscriber is not None:
            with contextlib.suppress(Exception):
                await channels.unsubscribe(self._subscriber)

    async def _run(self, channels: ChannelsPlugin) -> None:
        try:
            self._subscriber = await channels.subscribe(channel_for(self.region))
        except Exception as exc:
            self.ready.set_exception(exc)
            self._feed._forget(self)  # noqa: SLF001
            return
        self.ready.set_result(None)
        loop = asyncio.get_running_loop()
        queue = self._subscriber._queue  # noqa: SLF001
        try:
            while True:
                raw = await queue.get()
                queue.task_done()
                if raw is None:  # the channels are shutting down
                    break
                events = decoded(raw)
                now = loop.time()
                # Nothing a sink does in ``offer`` adds or removes sinks: no copy needed.
                for sink in self.sinks:
                    sink.offer(events, now)
        finally:
            self._feed._forget(self)  # noqa: SLF001
            for sink in self.sinks:
                sink.end()


# Writes one event to a connection; must be a coroutine (``Sink`` drives it by hand).
Deliver = Callable[[LiveEvent], Awaitable[Any]]
Idle = Callable[[], Awaitable[Any]]


class Sink:
    """One connection's end of a region's broadcast: admits each event once, in id order, and writes it.

    Until the connection goes live (its replay is written) events wait in ``pending``. Live, an
    event is written by driving the connection's send coroutine by hand, within the hub's step:
    a send that does not need to wait (the socket takes the bytes) costs no task, no queue and
    no wake-up, which is what a broadcast to thousands of connections is made of (what eager
    tasks do on Python 3.12). A send that must wait (flow control) is finished by a task of the
    connection's own, which then writes what queued up meanwhile, in order. A connection more
    than ``backlog`` events behind is ended: the client reconnects with ``Last-Event-ID``.
    """

    __slots__ = ("_backlog", "_busy", "_deliver", "_idle", "_timer", "ended", "last", "newest", "pending")

    def __init__(self, newest: int, backlog: int) -> None:
        self.newest = newest
        self.pending: deque[LiveEvent | None] = deque()
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last = 0.0
        self._backlog = backlog
        self._deliver: Deliver | None = None
        self._idle: Idle | None = None
        self._busy: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def offer(self, events: Iterable[LiveEvent], now: float) -> None:
        """Admit the events newer than the newest admitted, and write them (or queue them)."""
        for event in events:
            if event.event_id <= self.newest:
                continue
            self.newest = event.event_id
            self.last = now
            if self._deliver is None or self._busy is not None:
                if len(self.pending) >= self._backlog:
                    self.end()
                    return
                self.pending.append(event)
            else:
                self._drive(self._deliver(event))

    def go_live(
        self,
        replayed: int,
        deliver: Deliver,
        idle: Idle | None = None,
        heartbeat: float = 15.0,
    ) -> asyncio.Future[None]:
        """Write live events from now on (after those up to ``replayed``); returns ``ended``.

        ``idle`` is written whenever nothing was for ``heartbeat`` seconds.
        """
        if self.ended.done():
            return self.ended
        self.newest = max(self.newest, replayed)
        while self.pending and self.pending[0] is not None and self.pending[0].event_id <= replayed:
            self.pending.popleft()
        loop = asyncio.get_running_loop()
        self.last = loop.time()
        self._deliver, self._idle = deliver, idle
        if self.pending:
            self._busy = asyncio.create_task(self._finish(None, None))
        if idle is not None:
            self._timer = loop.call_later(heartbeat, self._watch, loop, heartbeat)
        return self.ended

    def end(self) -> None:
        """Write nothing more; whoever waits on ``ended`` closes the connection."""
        self._deliver = None
        self.pending.clear()
        if not self.ended.done():
            self.ended.set_result(None)

    async def close(self) -> None:
        """Stop the timer and any unfinished write (the connection is going away)."""
        self.end()
        if self._timer is not None:
            self._timer.cancel()
        busy, self._busy = self._busy, None
        if busy is not None and busy is not asyncio.current_task():
            busy.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await busy

    def _watch(self, loop: asyncio.AbstractEventLoop, heartbeat: float) -> None:
        if self.ended.done():
            return
        now = loop.time()
        idle = now - self.last
        if idle >= heartbeat:
            self.last = now
            idle = 0.0
            if self._idle is not None and self._busy is None:
                self._drive(self._idle())
        self._timer = loop.call_later(heartbeat - idle, self._watch, loop, heartbeat)

    def _drive(self, awaitable: Awaitable[Any]) -> None:
        step = cast(Coroutine[Any, Any, Any], awaitable)
        try:
            waits_on = step.send(None)
        except StopIteration:
            return
        except Exception:  # the connection is gone
            self.end()
            return
        self._busy = asyncio.create_task(self._finish(step, waits_on))

    async def _finish(self, step: Coroutine[Any, Any, Any] | None, waits_on: Any) -> None:
        try:
            if step is not None:
                await _resume(step, waits_on)
            while self.pending and self._deliver is not None:
                event = self.pending.popleft()
                if event is None:
                    continue
                await self._deliver(event)
        except asyncio.CancelledError:
            raise
        except Exception:  # the connection is gone
            self.end()
        finally:
            if self._busy is asyncio.current_task():
                self._busy = None


async def _resume(step: Coroutine[Any, Any, Any], waits_on: Any) -> None:
    """Carry a hand-driven coroutine on from its first suspension to its end, as its task would."""
    try:
        while True:
            if waits_on is None:  # a bare yield (asyncio.sleep(0))
                await asyncio.sleep(0)
            else:
                await asyncio.wait([waits_on])
            try:
                waits_on = step.send(None)
            except StopIteration:
                return
    except BaseException:
        step.close()
        raise


@dataclass(slots=True)
class Replay:
    """What a new subscriber gets: missed events, whether history fell short, and its live sink."""

    missed: list[LiveEvent]
    gap: bool
    sink: Sink

    @property
    def replayed(self) -> int:
        """The newest id the replay holds (0 when it holds nothing)."""
        return self.missed[-1].event_id if self.missed else 0

    def go_live(
        self,
        deliver: Deliver,
        idle: Idle | None = None,
        heartbeat: float = 15.0,
    ) -> asyncio.Future[None]:
        """Once the replay is written: write live events through ``deliver``; returns ``ended``."""
        return self.sink.go_live(self.replayed, deliver, idle, heartbeat)

    async def events(self, heartbeat: float) -> AsyncGenerator[LiveEvent | None, None]:
        """Missed events, then live ones without repeats; ``None`` marks an idle ``heartbeat``."""
        for event in self.missed:
            yield event
        queue: asyncio.Queue[object] = asyncio.Queue()

        async def deliver(event: LiveEvent) -> None:
            queue.put_nowait(event)

        async def idle() -> None:
            queue.put_nowait(None)

        ended = self.go_live(deliver, idle, heartbeat)
        ended.add_done_callback(lambda _: queue.put_nowait(_ENDED))
        while (item := await queue.get()) is not _ENDED:
            yield cast(LiveEvent | None, item)


# Queued once the sink has ended; never an event.
_ENDED = object()
