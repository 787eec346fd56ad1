"""A circuit breaker per SMS provider, its state shared by every process through ``work.store``.

::

    closed ──(threshold consecutive failures)──► open ──(cool-down over)──► half-open
      ▲                                           ▲                              │
      └──────────────(the trial succeeds)─────────┼──────────────────────────────┤
                                                  └──────(the trial fails)───────┘

While open, nobody calls the provider. After the cool-down exactly one caller gets the trial
call (half-open); everyone else still sees the provider as unavailable until the trial ends
(or, if its caller died, until the trial has had a send's worth of time). The transitions are
pure functions of the stored state, so they are tested without a clock or a store; updates are
atomic (a Redis ``WATCH`` transaction, or a lock in the one process of embedded mode).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from litestar.stores.base import Store
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis
from redis.exceptions import WatchError


class BreakerState(enum.StrEnum):
    """Whether a provider may be called."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker(msgspec.Struct, kw_only=True, frozen=True):
    """One provider's breaker as stored (times are Unix seconds)."""

    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    open_until: float | None = None
    # While half-open: until when the trial call may take before another caller gets one.
    trial_until: float | None = None
    last_error: str | None = None

    def shown(self, now: float) -> BreakerState:
        """The state as an observer sees it now: an open breaker whose cool-down is over is half-open."""
        if self.state == BreakerState.OPEN and self.open_until is not None and now >= self.open_until:
            return BreakerState.HALF_OPEN
        return self.state


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """How many failures open a breaker, for how long, and how long a trial may take."""

    threshold: int
    cooldown: float
    trial_seconds: float


def acquire(breaker: Breaker, now: float, policy: BreakerPolicy) -> tuple[bool, Breaker]:
    """May the caller use the provider now? Taking the half-open trial is part of the answer."""
    if breaker.state == BreakerState.CLOSED:
        return True, breaker
    if breaker.state == BreakerState.OPEN:
        if breaker.open_until is not None and now < breaker.open_until:
            return False, breaker
        return True, msgspec.structs.replace(
            breaker, state=BreakerState.HALF_OPEN, trial_until=now + policy.trial_seconds
        )
    # Half-open: one trial at a time; a trial whose caller vanished is handed to the next caller.
    if breaker.trial_until is not None and now < breaker.trial_until:
        return False, breaker
    return True, msgspec.structs.replace(breaker, trial_until=now + policy.trial_seconds)


def succeeded(breaker: Breaker) -> Breaker:
    """A call went through: closed, failures forgotten."""
    return Breaker(last_error=breaker.last_error)


def failed(breaker: Breaker, now: float, policy: BreakerPolicy, error: str) -> Breaker:
    """A call failed: count it; open at the threshold, or again when the half-open trial failed."""
    failures = breaker.failures + 1
    if breaker.state == BreakerState.HALF_OPEN or failures >= policy.threshold:
        return Breaker(
            state=BreakerState.OPEN, failures=failures, open_until=now + policy.cooldown, last_error=error
        )
    # Already open (a call that started before it opened): stays open until its cool-down ends.
    return msgspec.structs.replace(breaker, failures=failures, last_error=error)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Breaker)
# Embedded mode has one process: a lock per key is enough to make read-modify-write atomic.
_LOCAL_LOCKS: dict[str, asyncio.Lock] = {}


class CircuitBreaker:
    """One provider's breaker, read and changed through the shared store."""

    def __init__(self, name: str, store: Store, redis: Redis | None, policy: BreakerPolicy) -> None:
        self.name = name
        self.policy = policy
        self._store = store
        self._redis = redis
        self._key = f"sms-breaker:{name}"

    async def read(self) -> Breaker:
        """The stored state (closed when nothing is stored)."""
        raw = await self._store.get(self._key)
        return _decoder.decode(raw) if raw else Breaker()

    async def allow(self, now: float) -> bool:
        """Whether to call the provider now (taking the half-open trial if it is free)."""
        verdict: list[bool] = []

        def change(breaker: Breaker) -> Breaker:
            allowed, after = acquire(breaker, now, self.policy)
            verdict[:] = [allowed]
            return after

        await self._update(change)
        return verdict[0]

    async def record_success(self) -> Breaker:
        """The provider answered sensibly."""
        return await self._update(succeeded)

    async def record_failure(self, now: float, error: str) -> Breaker:
        """The provider failed or did not answer."""
        return await self._update(lambda breaker: failed(breaker, now, self.policy, error))

    async def _update(self, change: Callable[[Breaker], Breaker]) -> Breaker:
        if self._redis is not None and isinstance(self._store, RedisStore):
            return await self._update_redis(self._redis, self._store, change)
        lock = _LOCAL_LOCKS.setdefault(self._key, asyncio.Lock())
        async with lock:
            after = change(await self.read())
            await self._store.set(self._key, _encoder.encode(after))
            return after

    async def _update_redis(self, redis: Redis, store: RedisStore, change: Callable[[Breaker], Breaker]) -> Breaker:
        # The store's own key, so what the store reads is what was written here.
        key = f"{store.namespace}:{self._key}" if store.namespace else self._key
        async with redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    before = _decoder.decode(raw) if raw else Breaker()
                    after = change(before)
                    if after != before:
                        pipe.multi()
                        pipe.set(key, _encoder.encode(after))
                        await pipe.execute()
                    else:
                        await pipe.unwatch()
                    return after
                except WatchError:
                    # Another process changed it between our read and write: decide again.
                    continue
