"""A token bucket per key: in Redis when several processes serve, else in a Litestar store.

With Redis, one script reads, refills and takes in one round trip, atomically: two API
processes taking from one vehicle's bucket at the same instant cannot both pass. The store
(embedded defaults: one process) has no compare-and-set, so there the read-modify-write is
serialised per key inside the process.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Callable

from litestar.stores.base import Store
from litestar.stores.registry import StoreRegistry
from redis.asyncio import Redis

from naboom.errors import TooManyRequestsError
from naboom.settings import Settings

PING_RATE_STORE = "vehicle-ping-rate"

# One lock per key while someone holds it (the store's buckets).
_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

# KEYS[1] the bucket; ARGV: rate per second, burst, now (s), ttl (s). The bucket is stored as
# "<tokens> <at>"; returns "" when a token was taken, else the tokens there are (below 1).
_TAKE_LUA = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = burst
local raw = redis.call('GET', KEYS[1])
if raw then
  local saved, at = string.match(raw, '^(%S+) (%S+)$')
  tokens = math.min(burst, tonumber(saved) + math.max(0, now - tonumber(at)) * rate)
end
if tokens < 1 then
  return string.format('%.6f', tokens)
end
redis.call('SET', KEYS[1], string.format('%.6f %.6f', tokens - 1, now), 'EX', ARGV[4])
return ''
"""


class TokenBucket:
    """``per_minute`` tokens a minute, at most ``burst`` saved up; one request takes one token."""

    def __init__(self, per_minute: int, burst: int, clock: Callable[[], float] = time.time) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._clock = clock
        # A full bucket and a missing key are the same thing, so keys expire once refilled.
        self._ttl = math.ceil(self._burst / self._rate) + 1

    async def take(self, key: str) -> None:
        """Take a token for ``key`` or raise 429 with the seconds until the next one."""
        short = await self._take(key, self._clock())
        if short is not None:
            wait = math.ceil((1 - short) / self._rate)
            raise TooManyRequestsError(f"too many pings; the next is allowed in {wait} s", retry_after=wait)

    async def _take(self, key: str, now: float) -> float | None:
        """Take a token at ``now``: ``None`` if taken, else the tokens there are (below one)."""
        raise NotImplementedError


class StoreTokenBucket(TokenBucket):
    """Buckets kept in a Litestar store, serialised per key inside this process."""

    def __init__(self, store: Store, per_minute: int, burst: int, clock: Callable[[], float] = time.time) -> None:
        super().__init__(per_minute, burst, clock)
        self._store = store

    async def _take(self, key: str, now: float) -> float | None:
        lock = _locks.get(key)
        if lock is None:
            lock = _locks[key] = asyncio.Lock()
        async with lock:
            tokens = self._burst
            if (raw := await self._store.get(key)) is not None:
                saved, at = (float(x) for x in raw.split(b" "))
                tokens = min(self._burst, saved + max(0.0, now - at) * self._rate)
            if tokens < 1:
                return tokens
            await self._store.set(key, f"{tokens - 1:.6f} {now:.6f}", expires_in=self._ttl)
            return None


class RedisTokenBucket(TokenBucket):
    """Buckets kept in Redis under ``namespace``, each take one atomic script (shared by every process)."""

    def __init__(
        self, redis: Redis, namespace: str, per_minute: int, burst: int, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(per_minute, burst, clock)
        self._script = redis.register_script(_TAKE_LUA)
        self._namespace = namespace

    async def _take(self, key: str, now: float) -> float | None:
        short = await self._script(
            keys=[f"{self._namespace}:{key}"], args=[repr(self._rate), repr(self._burst), f"{now:.6f}", self._ttl]
        )
        return float(short) if short else None


def ping_bucket(settings: Settings, redis: Redis | None, stores: StoreRegistry) -> TokenBucket:
    """The vehicles' ping buckets (``NABOOM_VEHICLE_PINGS_PER_MINUTE``, ``NABOOM_VEHICLE_PING_BURST``)."""
    per_minute, burst = settings.vehicle_pings_per_minute, settings.vehicle_ping_burst
    if redis is not None:
        return RedisTokenBucket(redis, f"{settings.redis_prefix}:{PING_RATE_STORE}", per_minute, burst)
    return StoreTokenBucket(stores.get(PING_RATE_STORE), per_minute, burst)
