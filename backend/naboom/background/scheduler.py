"""The one scheduler: TaskIQ's scheduler loop, run only while this process holds the leader lock.

Several ``naboom scheduler`` processes may be started (a deploy overlaps, a replica is added);
exactly one sends the periodic tasks. The lock is a Redis key with a short expiry that the
leader renews; a standby takes over when the leader stops renewing (it died or lost Redis).
Who leads, since when, and how many runs each process has sent are kept in Redis for the
admin API. On embedded defaults the API process is the only scheduler and holds the lock in
memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis
from taskiq import AsyncBroker, ScheduleSource, TaskiqScheduler
from taskiq.api import run_scheduler_task
from taskiq.schedule_sources import LabelScheduleSource
from taskiq.scheduler.scheduled_task import ScheduledTask

from naboom.background.broker import Work, utcnow

log = logging.getLogger(__name__)



@dataclass(frozen=True, slots=True)
class Keys:
    """The scheduler's Redis keys under a deployment's prefix."""

    lock: str
    status: str
    sent: str

    @classmethod
    def under(cls, prefix: str) -> Keys:
        """The keys of the deployment whose Redis keys start with ``prefix``."""
        return cls(f"{prefix}:scheduler:leader", f"{prefix}:scheduler:status", f"{prefix}:scheduler:sent")

# Renew only if we still hold it; release only our own lock.
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def instance_name() -> str:
    """This process, as other processes and the admin see it."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class SchedulerState:
    """What this process knows about scheduling (the embedded mode's whole truth)."""

    instance: str = field(default_factory=instance_name)
    leader: bool = False
    sent: int = 0


class CountingScheduler(TaskiqScheduler):
    """TaskIQ's scheduler, counting what it sends (in Redis, per process)."""

    def __init__(
        self, broker: AsyncBroker, sources: list[ScheduleSource], state: SchedulerState, redis: Redis | None, keys: Keys
    ) -> None:
        super().__init__(broker, sources)
        self._state = state
        self._redis = redis
        self._keys = keys

    async def on_ready(self, source: ScheduleSource, task: ScheduledTask) -> None:
        """Send the task, then count it."""
        await super().on_ready(source, task)
        self._state.sent += 1
        if self._redis is not None:
            await self._redis.hincrby(self._keys.sent, self._state.instance, 1)


async def _run_schedulers(work: Work, state: SchedulerState) -> None:
    """TaskIQ's scheduler loop for every queue, until cancelled."""
    loops = [
        run_scheduler_task(
            CountingScheduler(
                broker,
                [LabelScheduleSource(broker)],
                state,
                work.context.redis,
                Keys.under(work.context.settings.redis_prefix),
            ),
            interval=timedelta(minutes=1),
        )
        for broker in work.brokers.values()
    ]
    await asyncio.gather(*loops)


async def run_scheduler(work: Work, state: SchedulerState | None = None) -> None:
    """Schedule the periodic tasks while leader; stand by otherwise. Runs until cancelled."""
    state = state or SchedulerState()
    redis = work.context.redis
    if redis is None:
        state.leader = True
        log.info("scheduler %s running (in-process, embedded)", state.instance)
        await _run_schedulers(work, state)
        return
    keys = Keys.under(work.context.settings.redis_prefix)
    lock_ms = int(work.context.settings.scheduler_lock_seconds * 1000)
    renew = redis.register_script(_RENEW_LUA)
    release = redis.register_script(_RELEASE_LUA)
    announced = False
    try:
        while True:
            if not await redis.set(keys.lock, state.instance, nx=True, px=lock_ms):
                if not announced:
                    log.info("scheduler %s standing by; another scheduler holds the lock", state.instance)
                    announced = True
                await asyncio.sleep(lock_ms / 3000)
                continue
            announced = False
            state.leader = True
            await redis.hset(keys.status, mapping={"leader": state.instance, "since": utcnow().isoformat()})
            log.info("scheduler %s is the leader", state.instance)
            loop = asyncio.create_task(_run_schedulers(work, state), name="taskiq-scheduler")
            try:
                while not loop.done():
                    await asyncio.sleep(lock_ms / 3000)
                    if not await renew(keys=[keys.lock], args=[state.instance, lock_ms]):
                        log.warning("scheduler %s lost the lock; standing by", state.instance)
                        break
            finally:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
                state.leader = False
            if loop.done() and not loop.cancelled() and loop.exception() is not None:
                raise loop.exception()  # type: ignore[misc]
    finally:
        with contextlib.suppress(Exception):
            await release(keys=[keys.lock], args=[state.instance])


async def scheduler_status(redis: Redis | None, prefix: str, local: SchedulerState | None) -> dict[str, Any]:
    """Who schedules now, since when, and how many runs each scheduler process has sent."""
    if redis is None:
        return {
            "mode": "embedded",
            "leader": local.instance if local and local.leader else None,
            "since": None,
            "sent": {local.instance: local.sent} if local else {},
        }
    keys = Keys.under(prefix)
    leader = await redis.get(keys.lock)
    status = await redis.hgetall(keys.status)
    sent = await redis.hgetall(keys.sent)
    return {
        "mode": "redis",
        "leader": leader.decode() if leader else None,
        "since": status.get(b"since", b"").decode() or None,
        "sent": {k.decode(): int(v) for k, v in sent.items()},
    }
