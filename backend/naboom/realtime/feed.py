"""The live feed: per-region event ids, fan-out through Litestar channels, bounded replay.

A channel message carries one or more events, one per line: ``<event id>\\t<type>\\t<json>``
(msgspec escapes tabs and newlines inside JSON strings). It is encoded once per broadcast and
split cheaply by every subscriber, so SSE and WebSocket frames never re-encode the JSON, and a
burst of incidents costs one publish per region, not one per incident.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend
from redis.asyncio import Redis

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()

# Event ids grow across processes and restarts: max(previous + 1, now in microseconds).
# ARGV[2] ids are reserved at once; the first is returned.
_NEXT_IDS_LUA = """
local now = tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local nxt = math.max(cur + 1, now)
redis.call('SET', KEYS[1], nxt + tonumber(ARGV[2]) - 1)
return nxt
"""


# How many of the newest history entries mark "now" for a client without Last-Event-ID (several
# API processes may append out of id order).
_NEWEST_PROBE = 32


def channel_for(region: str) -> str:
    """The channel that carries one region's live events."""
    return f"region.{region}"


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
    """One event as subscribers receive it."""

    event_id: int
    type: str
    json: bytes

    @classmethod
    def decode_all(cls, raw: bytes) -> list[LiveEvent]:
        """The events of one channel message."""
        events = []
        for line in raw.split(b"\n"):
            event_id, type_, body = line.split(b"\t", 2)
            events.append(cls(int(event_id), type_.decode(), body))
        return events

    def encode(self) -> bytes:
        """This event's line in a channel message."""
        return b"%d\t%s\t%s" % (self.event_id, self.type.encode(), self.json)


class EventIds(Protocol):
    """Hands out increasing event ids per region."""

    async def reserve(self, region: str, count: int) -> int:
        """Reserve ``count`` consecutive ids for ``region``; returns the first."""
        ...


class MemoryEventIds:
    """Event ids for a single process."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    async def reserve(self, region: str, count: int) -> int:
        """Reserve ``count`` consecutive ids for ``region``; returns the first."""
        nxt = max(self._last.get(region, 0) + 1, time.time_ns() // 1000)
        self._last[region] = nxt + count - 1
        return nxt


class RedisEventIds:
    """Event ids shared by every API process through Redis."""

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_NEXT_IDS_LUA)

    async def reserve(self, region: str, count: int) -> int:
        """Reserve ``count`` consecutive ids for ``region``; returns the first."""
        now = time.time_ns() // 1000
        return int(await self._script(keys=[f"naboom:event-id:{region}"], args=[now, count]))


class LiveFeed:
    """Publishes events to a region's subscribers and replays what a reconnecting client missed."""

    def __init__(self, channels: ChannelsPlugin, ids: EventIds, history: int) -> None:
        self._channels = channels
        self._ids = ids
        self._history = history

    async def publish(self, region: str, type_: str, data: dict[str, Any]) -> int:
        """Broadcast one event to ``region``; returns its event id."""
        (event,) = await self.publish_many(region, [(type_, data)])
        return event.event_id

    async def publish_many(self, region: str, items: Sequence[tuple[str, dict[str, Any]]]) -> list[LiveEvent]:
        """Broadcast several events to ``region`` in one channel message, ids in the given order."""
        if not items:
            return []
        first = await self._ids.reserve(region, len(items))
        events = [
            LiveEvent(first + n, type_, _encoder.encode({"type": type_, "event_id": first + n, **data}))
            for n, (type_, data) in enumerate(items)
        ]
        await self._channels.wait_published(b"\n".join(e.encode() for e in events), channel_for(region))
        return events

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
            # whatever is in the history before we subscribe is old.
            recent = await backend.get_history(channel, _NEWEST_PROBE)
            after = max((e.event_id for raw in recent for e in LiveEvent.decode_all(raw)), default=0)
        subscriber = await self._channels.subscribe(channel)
        try:
            history = await backend.get_history(channel, self._history)
            events = sorted((e for raw in history for e in LiveEvent.decode_all(raw)), key=lambda e: e.event_id)
            missed = [e for e in events if e.event_id > after]
            # A full history that starts after the client's last id may have lost events.
            gap = (
                last_event_id is not None
                and len(history) >= self._history
                and bool(events)
                and events[0].event_id > last_event_id
            )
            yield Replay(after=after, missed=missed, gap=gap, live=subscriber.iter_events())
        finally:
            await self._channels.unsubscribe(subscriber)


@dataclass(slots=True)
class Replay:
    """What a new subscriber gets: missed events, whether history fell short, the live stream."""

    after: int
    missed: list[LiveEvent]
    gap: bool
    live: AsyncGenerator[bytes, None]

    async def events(self, heartbeat: float) -> AsyncGenerator[LiveEvent | None, None]:
        """Missed events, then live ones without repeats; ``None`` marks an idle ``heartbeat``."""
        newest = self.after
        for event in self.missed:
            newest = event.event_id
            yield event
        async for raw in _with_idle_marks(self.live, heartbeat):
            if raw is None:
                yield None
                continue
            for event in LiveEvent.decode_all(raw):
                if event.event_id > newest:
                    newest = event.event_id
                    yield event


async def _with_idle_marks(source: AsyncGenerator[bytes, None], every: float) -> AsyncGenerator[bytes | None, None]:
    """Items of ``source``, with ``None`` after each ``every`` seconds of silence."""
    pending: asyncio.Future[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
            done, _ = await asyncio.wait({pending}, timeout=every)
            if not done:
                yield None
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield item
    finally:
        if pending is not None:
            pending.cancel()
