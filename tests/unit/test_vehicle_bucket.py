"""The vehicle ping token bucket: 30 a minute, bursts of 10, on a clock the test moves.

Every rule holds for both kinds: in a Litestar store (embedded defaults) and in (real) Redis,
where one script takes each token atomically for every API process.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from litestar.stores.memory import MemoryStore
from redis.asyncio import Redis

from naboom.errors import TooManyRequestsError
from naboom.vehicles.ratelimit import RedisTokenBucket, StoreTokenBucket, TokenBucket
from tests.support import REDIS_URL


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture(params=["store", "redis"])
async def bucket(request: pytest.FixtureRequest, clock: Clock, redis: Redis) -> TokenBucket:
    if request.param == "store":
        return StoreTokenBucket(MemoryStore(), per_minute=30, burst=10, clock=clock)
    return RedisTokenBucket(redis, f"test-bucket-{uuid.uuid4().hex}", per_minute=30, burst=10, clock=clock)


async def _retry_after(bucket: TokenBucket, key: str) -> int:
    with pytest.raises(TooManyRequestsError) as refused:
        await bucket.take(key)
    assert refused.value.headers is not None
    return int(refused.value.headers["Retry-After"])


async def test_a_full_bucket_allows_a_burst_of_ten_then_answers_retry_after_two_seconds(
    bucket: TokenBucket,
) -> None:
    for _ in range(10):
        await bucket.take("v1")
    assert await _retry_after(bucket, "v1") == 2


async def test_tokens_come_back_at_one_every_two_seconds(bucket: TokenBucket, clock: Clock) -> None:
    for _ in range(10):
        await bucket.take("v1")
    clock.now += 1
    assert await _retry_after(bucket, "v1") == 1  # half a token saved up
    clock.now += 1
    await bucket.take("v1")
    assert await _retry_after(bucket, "v1") == 2


async def test_a_steady_thirty_a_minute_is_never_refused(bucket: TokenBucket, clock: Clock) -> None:
    for _ in range(120):
        await bucket.take("v1")
        clock.now += 2


async def test_an_idle_bucket_refills_to_the_burst_and_no_further(bucket: TokenBucket, clock: Clock) -> None:
    for _ in range(10):
        await bucket.take("v1")
    clock.now += 3600
    for _ in range(10):
        await bucket.take("v1")
    assert await _retry_after(bucket, "v1") == 2


async def test_each_key_has_its_own_bucket(bucket: TokenBucket) -> None:
    for _ in range(10):
        await bucket.take("v1")
    await _retry_after(bucket, "v1")
    await bucket.take("v2")


async def test_concurrent_takes_for_one_key_never_exceed_the_burst(bucket: TokenBucket) -> None:
    results = await asyncio.gather(*(bucket.take("v1") for _ in range(25)), return_exceptions=True)
    assert sum(r is None for r in results) == 10
    assert all(isinstance(r, TooManyRequestsError) for r in results if r is not None)


async def test_two_processes_taking_from_one_redis_bucket_at_once_never_exceed_the_burst(
    clock: Clock, redis: Redis
) -> None:
    namespace = f"test-bucket-{uuid.uuid4().hex}"
    other = Redis.from_url(REDIS_URL)  # a second API process: its own client and connections
    try:
        buckets = [RedisTokenBucket(client, namespace, per_minute=30, burst=10, clock=clock) for client in (redis, other)]
        results = await asyncio.gather(*(buckets[n % 2].take("v1") for n in range(40)), return_exceptions=True)
    finally:
        await other.aclose()
    assert sum(r is None for r in results) == 10
    assert all(isinstance(r, TooManyRequestsError) for r in results if r is not None)


async def test_a_redis_bucket_expires_once_it_would_be_full_again(clock: Clock, redis: Redis) -> None:
    namespace = f"test-bucket-{uuid.uuid4().hex}"
    await RedisTokenBucket(redis, namespace, per_minute=30, burst=10, clock=clock).take("v1")
    # 10 tokens at one every 2 s refill in 20 s: the key lives 21 s, then a missing key is a full bucket.
    assert 0 < await redis.ttl(f"{namespace}:v1") <= 21
