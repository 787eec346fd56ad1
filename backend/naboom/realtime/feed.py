"""The live feed: per-region event ids, fan-out through Litestar channels, bounded replay.

A channel message is ``b"<event id>\\n<type>\\n<json>"``: encoded once per broadcast, split
cheaply by every subscriber, so SSE and WebSocket frames never re-encode the JSON.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
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
_NEXT_ID_LUA = """
local now = tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local nxt = math.max(cur + 1, now)
redis.call('SET', KEYS[1], nxt)
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
    def decode(cls, raw: bytes) -> LiveEvent:
        """Split a channel message into its parts."""
        event_id, type_, body = raw.split(b"\n", 2)
        return cls(int(event_id), type_.decode(), body)


class EventIds(Protocol):
    """Hands out increasing event ids per region."""

    async def next(self, region: str) -> int:
        """The next id for ``region``."""
        ...


class MemoryEventIds:
    """Event ids for a single process."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    async def next(self, region: str) -> int:
        """The next id for ``region``."""
        nxt = max(self._last.get(region, 0) + 1, time.time_ns() // 1000)
        self._last[region] = nxt
        return nxt


class RedisEventIds:
    """Event ids shared by every API process through Redis."""

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_NEXT_ID_LUA)

    async def next(self, region: str) -> int:
        """The next id for ``region``."""
        return int(await self._script(keys=[f"naboom:event-id:{region}"], args=[time.time_ns() // 1000]))


class LiveFeed:
    """Publishes events to a region's subscribers and replays what a reconnecting client missed."""

    def __init__(self, channels: ChannelsPlugin, ids: EventIds, history: int) -> None:
        self._channels = channels
        self._ids = ids
        self._history = history

    async def publish(self, region: str, type_: str, data: dict[str, Any]) -> int:
        """Broadcast one event to ``region``; returns its event id."""
        event_id = await self._ids.next(region)
        body = _encoder.encode({"type": type_, "event_id": event_id, **data})
        await self._channels.wait_published(b"%d\n%s\n%s" % (event_id, type_.encode(), body), channel_for(region))
        return event_id

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
            after = max((LiveEvent.decode(raw).event_id for raw in recent), default=0)
        subscriber = await self._channels.subscribe(channel)
        try:
            history = await backend.get_history(channel, self._history)
            events = sorted((LiveEvent.decode(raw) for raw in history), key=lambda e: e.event_id)
            missed = [e for e in events if e.event_id > after]
            # A full history that starts after the client's last id may have lost events.
            gap = (
                last_event_id is not None
                and len(events) >= self._history
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
            event = LiveEvent.decode(raw)
            if event.event_id > newest:
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
