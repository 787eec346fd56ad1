"""On Redis, events published concurrently by several API processes reach every subscriber in id order.

A subscriber drops a live event whose id is not above the newest it has delivered (that is how
history and live events are merged without repeats), so out-of-order arrival would lose events.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from litestar.channels import ChannelsPlugin
from litestar.channels.backends.redis import RedisChannelsStreamBackend
from redis.asyncio import Redis

from naboom.realtime.feed import LiveFeed, RedisFeedLog
from tests.conftest import REDIS_URL

PROCESSES = 4
BURSTS = 50


@asynccontextmanager
async def _process(history: int = 1000) -> AsyncIterator[LiveFeed]:
    """One API process's live feed: its own Redis connection, channels plugin and feed log."""
    redis = Redis.from_url(REDIS_URL)
    backend = RedisChannelsStreamBackend(history=history, redis=redis, key_prefix="naboom:test-live")
    channels = ChannelsPlugin(backend=backend, arbitrary_channels_allowed=True, subscriber_max_backlog=100_000)
    async with channels:
        yield LiveFeed(channels, RedisFeedLog(redis, backend, history=history, ttl_ms=60_000), history)
    await redis.aclose()


async def test_concurrent_publishers_on_redis_deliver_every_event_in_id_order() -> None:
    region = f"ZA-{uuid.uuid4().hex[:6]}"
    async with AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(_process())
        publishers = [await stack.enter_async_context(_process()) for _ in range(PROCESSES)]
        replay = await stack.enter_async_context(watcher.subscribe(region, None))

        async def burst(feed: LiveFeed, n: int) -> list[int]:
            return list(await feed.publish_many(region, [("incident.created", {"n": n, "k": k}) for k in range(3)]))

        sent = await asyncio.gather(*(burst(publishers[n % PROCESSES], n) for n in range(PROCESSES * BURSTS)))
        expected = sorted(i for ids in sent for i in ids)
        received = []
        events = replay.events(heartbeat=30)
        while len(received) < len(expected):
            event = await asyncio.wait_for(anext(events), 20)
            assert event is not None
            received.append(event.event_id)

    assert received == expected
