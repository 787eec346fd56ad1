"""A token bucket per key, kept in a Litestar store (Redis when several processes serve).

The store has no compare-and-set, so the read-modify-write is serialised per key inside a
process only. Two API processes taking from one vehicle's bucket at the same instant could
both pass: one vehicle pings every few seconds from one connection, so that is good enough.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Callable

from litestar.stores.base import Store

from naboom.errors import TooManyRequestsError

# One lock per key while someone holds it; buckets are cheap and may be made per request.
_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


class TokenBucket:
    """``per_minute`` tokens a minute, at most ``burst`` saved up; one request takes one token."""

    def __init__(self, store: Store, per_minute: int, burst: int, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._clock = clock
        # A full bucket and a missing key are the same thing, so keys expire once refilled.
        self._ttl = math.ceil(self._burst / self._rate) + 1

    async def take(self, key: str) -> None:
        """Take a token for ``key`` or raise 429 with the seconds until the next one."""
        lock = _locks.get(key)
        if lock is None:
            lock = _locks[key] = asyncio.Lock()
        async with lock:
            now = self._clock()
            tokens = self._burst
            if (raw := await self._store.get(key)) is not None:
                saved, at = (float(x) for x in raw.split(b" "))
                tokens = min(self._burst, saved + max(0.0, now - at) * self._rate)
            if tokens < 1:
                wait = math.ceil((1 - tokens) / self._rate)
                raise TooManyRequestsError(f"too many pings; the next is allowed in {wait} s", retry_after=wait)
            await self._store.set(key, f"{tokens - 1:.6f} {now:.6f}", expires_in=self._ttl)
