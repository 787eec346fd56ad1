"""The circuit breaker's transitions, and the same through the shared store (memory and Redis)."""

from __future__ import annotations

import uuid

import pytest
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis

from naboom.notify.breaker import (
    Breaker,
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    acquire,
    failed,
    succeeded,
)
from tests.support import REDIS_URL

POLICY = BreakerPolicy(threshold=3, cooldown=60.0, trial_seconds=15.0)
T0 = 1_000_000.0


def test_a_closed_breaker_lets_every_call_through() -> None:
    allowed, after = acquire(Breaker(), T0, POLICY)
    assert allowed and after == Breaker()


def test_it_opens_after_threshold_consecutive_failures_and_not_before() -> None:
    breaker = Breaker()
    for n in range(1, POLICY.threshold):
        breaker = failed(breaker, T0, POLICY, f"error {n}")
        assert breaker.state == BreakerState.CLOSED and breaker.failures == n
    breaker = failed(breaker, T0, POLICY, "error 3")
    assert breaker.state == BreakerState.OPEN and breaker.open_until == T0 + POLICY.cooldown
    assert breaker.last_error == "error 3"


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    breaker = failed(failed(Breaker(), T0, POLICY, "x"), T0, POLICY, "x")
    breaker = succeeded(breaker)
    assert breaker.failures == 0 and breaker.state == BreakerState.CLOSED
    assert failed(breaker, T0, POLICY, "x").state == BreakerState.CLOSED


def _open() -> Breaker:
    breaker = Breaker()
    for _ in range(POLICY.threshold):
        breaker = failed(breaker, T0, POLICY, "boom")
    return breaker


def test_an_open_breaker_refuses_calls_until_the_cooldown_is_over() -> None:
    breaker = _open()
    allowed, after = acquire(breaker, T0 + POLICY.cooldown - 0.001, POLICY)
    assert not allowed and after == breaker
    assert breaker.shown(T0 + 1) == BreakerState.OPEN
    assert breaker.shown(T0 + POLICY.cooldown) == BreakerState.HALF_OPEN


def test_after_the_cooldown_exactly_one_caller_gets_the_trial() -> None:
    now = T0 + POLICY.cooldown
    first, trial = acquire(_open(), now, POLICY)
    assert first and trial.state == BreakerState.HALF_OPEN and trial.trial_until == now + POLICY.trial_seconds
    second, same = acquire(trial, now + 1, POLICY)
    assert not second and same == trial


def test_a_successful_trial_closes_the_breaker() -> None:
    _, trial = acquire(_open(), T0 + POLICY.cooldown, POLICY)
    closed = succeeded(trial)
    assert closed.state == BreakerState.CLOSED and closed.failures == 0
    assert acquire(closed, T0 + POLICY.cooldown + 1, POLICY)[0]


def test_a_failed_trial_opens_it_again_for_another_cooldown() -> None:
    now = T0 + POLICY.cooldown
    _, trial = acquire(_open(), now, POLICY)
    reopened = failed(trial, now + 2, POLICY, "still down")
    assert reopened.state == BreakerState.OPEN and reopened.open_until == now + 2 + POLICY.cooldown
    assert not acquire(reopened, now + 3, POLICY)[0]


def test_a_trial_whose_caller_vanished_is_handed_to_the_next_caller() -> None:
    now = T0 + POLICY.cooldown
    _, trial = acquire(_open(), now, POLICY)
    allowed, again = acquire(trial, now + POLICY.trial_seconds, POLICY)
    assert allowed and again.trial_until == now + 2 * POLICY.trial_seconds


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_the_stored_breaker_goes_round_the_whole_cycle(backend: str) -> None:
    redis = Redis.from_url(REDIS_URL) if backend == "redis" else None
    store = RedisStore(redis, namespace=f"test-breaker-{uuid.uuid4().hex[:8]}") if redis else MemoryStore()
    policy = BreakerPolicy(threshold=2, cooldown=10.0, trial_seconds=5.0)
    breaker = CircuitBreaker("clickatell", store, redis, policy)
    other_process = CircuitBreaker("clickatell", store, redis, policy)
    try:
        assert await breaker.allow(T0)
        await breaker.record_failure(T0, "503")
        await other_process.record_failure(T0 + 1, "503")
        assert (await other_process.read()).state == BreakerState.OPEN
        assert not await breaker.allow(T0 + 2)
        assert await breaker.allow(T0 + 11)  # the trial
        assert not await other_process.allow(T0 + 12)  # only one
        await breaker.record_success()
        assert (await other_process.read()).state == BreakerState.CLOSED
        assert await other_process.allow(T0 + 13)
    finally:
        if redis is not None:
            await store.delete_all()
            await redis.aclose()
