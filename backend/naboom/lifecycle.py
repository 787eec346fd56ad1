"""Start-up: wait for the database and Redis with clear log lines instead of crash-looping."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from naboom.ingest.mqtt import Backoff
from naboom.logs import redact
from naboom.settings import Settings

log = logging.getLogger(__name__)


class DependencyUnavailable(Exception):
    """A dependency did not answer within the start-up timeout."""


def _address(url: str, default_port: int) -> str:
    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or default_port}"


async def _database_answers(url: str) -> None:
    engine = create_async_engine(url, pool_pre_ping=False)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def _redis_answers(url: str) -> None:
    client = Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def _wait(what: str, check: Callable[[], Awaitable[None]], deadline: float) -> None:
    backoff = Backoff(base=0.25, cap=5.0)
    attempt = 0
    while True:
        attempt += 1
        try:
            await asyncio.wait_for(check(), max(0.1, min(10.0, deadline - time.monotonic())))
        except Exception as exc:
            # Any failure to answer means "not yet". The message is redacted: drivers may quote the URL.
            reason = redact(f"{exc.__class__.__name__}: {exc}")[:200].rstrip(": ")
            left = deadline - time.monotonic()
            if left <= 0:
                raise DependencyUnavailable(f"{what} did not answer in time (last error: {reason})") from None
            delay = min(backoff.next_delay() + 0.1, left)
            log.warning("waiting for %s (attempt %d): %s; retrying in %.1fs", what, attempt, reason, delay)
            await asyncio.sleep(delay)
        else:
            if attempt > 1:
                log.info("%s answers (after %d attempts)", what, attempt)
            return


async def wait_for_dependencies(settings: Settings, *, redis: bool = True) -> None:
    """Return once the database (and Redis, when configured and asked for) answer; raise after the start-up timeout."""
    deadline = time.monotonic() + settings.startup_timeout_seconds
    if not settings.embedded_database:
        where = f"the database at {_address(settings.database_url, 5432)}"
        await _wait(where, lambda: _database_answers(settings.database_url), deadline)
    if redis and settings.redis_url:
        where = f"Redis at {_address(settings.redis_url, 6379)}"
        await _wait(where, lambda: _redis_answers(settings.redis_url or ""), deadline)
