"""The live feed: per-region event ids, fan-out through Litestar channels, bounded replay.

A channel message carries one or more events: its first line is the first event's id, then one
line per event, ``<type>\\t<json of the data>`` (msgspec escapes tabs and newlines inside JSON
strings); the n-th event's id is ``first + n``. The data is encoded once per broadcast, split
into SSE frames and WebSocket texts once per process (by whichever subscriber reads the message
first), and a burst of incidents costs one publish per region, not one per incident.

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
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
from litestar.channels import ChannelsBackend, ChannelsPlugin, Subscriber
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.channels.backends.redis import RedisChannelsStreamBackend
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


# A region's live stream outlives a quiet day, so a reconnecting monitor can still replay.
LIVE_TTL_MS = 24 * 3600 * 1000


def make_feed(settings: Settings, redis: Redis | None) -> tuple[ChannelsPlugin, LiveFeed]:
    """The channels plugin and the live feed on it: Redis streams when Redis is set, else memory."""
    backend: ChannelsBackend
    if redis is not None:
        backend = RedisChannelsStreamBackend(
            history=settings.stream_history, redis=redis, stream_ttl=LIVE_TTL_MS, key_prefix=f"{settings.redis_prefix}:live"
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
        yield feed


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
    ``text`` the WebSocket message: a broadcast to thousands of connections writes these same
    objects to each of them.
    """

    event_id: int
    type: str
    json: bytes
    sse: bytes
    text: str

    @classmethod
    def numbered(cls, event_id: int, type_: bytes, body: bytes) -> LiveEvent:
        """The event ``event_id`` of ``type_`` whose data encodes to the JSON object ``body``."""
        head = b'{"type":"%s","event_id":%d' % (type_, event_id)
        data = head + (b"}" if body == b"{}" else b"," + body[1:])
        frame = b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, type_, data)
        return cls(event_id, type_.decode(), data, frame, data.decode())

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
    """Publishes events to a region's subscribers and replays what a reconnecting client missed."""

    def __init__(self, channels: ChannelsPlugin, log: FeedLog, history: int) -> None:
        self._channels = channels
        self._log = log
        self._history = history

    async def publish(self, region: str, type_: str, data: dict[str, Any]) -> int:
        """Broadcast one event to ``region``; returns its event id."""
        (event,) = await self.publish_many(region, [(type_, data)])
        return event.event_id

    async def publish_many(self, region: str, items: Sequence[tuple[str, dict[str, Any]]]) -> list[LiveEvent]:
        """Broadcast several events to ``region`` in one channel message, ids in the given order."""
        if not items:
            return []
        lines = encode_lines(items)
        first = await self._log.append(region, len(items), lines)
        return LiveEvent.decode_all(b"%d\n%s" % (first, lines))

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
        subscriber = await self._channels.subscribe(channel)
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
            yield Replay(after=after, missed=missed, gap=gap, live=subscriber)
        finally:
            await self._channels.unsubscribe(subscriber)


@dataclass(slots=True)
class Replay:
    """What a new subscriber gets: missed events, whether history fell short, the live stream."""

    after: int
    missed: list[LiveEvent]
    gap: bool
    live: Subscriber

    async def events(self, heartbeat: float) -> AsyncGenerator[LiveEvent | None, None]:
        """Missed events, then live ones without repeats; ``None`` marks an idle ``heartbeat``.

        It reads the subscriber's queue itself, and silence is watched by one timer per
        connection that re-arms itself about once a heartbeat and, once the connection has been
        idle that long, queues an idle mark. A broadcast to thousands of connections thus costs
        no task and no timer per connection and event, only a clock read.
        """
        newest = self.after
        for event in self.missed:
            newest = event.event_id
            yield event
        loop = asyncio.get_running_loop()
        queue = self.live._queue  # noqa: SLF001
        last = loop.time()
        timer: asyncio.TimerHandle | None = None

        def watch() -> None:
            nonlocal last, timer
            idle = loop.time() - last
            if idle >= heartbeat:
                last += idle
                # A full queue has something to send: no idle mark needed.
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(_IDLE)
                idle = 0.0
            timer = loop.call_later(heartbeat - idle, watch)

        timer = loop.call_later(heartbeat, watch)
        try:
            while True:
                raw = await queue.get()
                queue.task_done()
                if raw is None:  # unsubscribed
                    return
                if raw is _IDLE:
                    yield None
                    continue
                last = loop.time()
                for event in decoded(raw):
                    if event.event_id > newest:
                        newest = event.event_id
                        yield event
        finally:
            if timer is not None:
                timer.cancel()


# Queued by a connection's own idle timer; never a channel message (those start with an id).
_IDLE = b""
