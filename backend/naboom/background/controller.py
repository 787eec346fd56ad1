"""The admin's view of background work: who schedules, and how full the task queues are."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from taskiq_redis import RedisStreamBroker

from naboom.background.broker import Work
from naboom.background.scheduler import scheduler_status
from naboom.schemas import Schema
from naboom.users.guards import admin_only


class QueueStatus(Schema):
    """One task queue: messages in its stream and those handed out but not yet acknowledged."""

    name: str
    backend: str
    length: int | None = None
    pending: int | None = None


class SchedulerStatus(Schema):
    """The scheduler lock's holder and what every scheduler process has sent."""

    mode: str
    leader: str | None
    since: str | None
    sent: dict[str, int]


class BackgroundStatus(Schema):
    """Scheduler and queues at a glance."""

    scheduler: SchedulerStatus
    queues: list[QueueStatus]


class BackgroundController(Controller):
    """``GET /api/system/background``."""

    path = "/api/system"
    tags = ["system"]
    guards = [admin_only]

    @get("/background")
    async def background(self, request: Request) -> BackgroundStatus:
        """Which process holds the scheduler lock, runs sent per scheduler, queue depths."""
        work: Work = request.app.state.work
        redis = work.context.redis
        status: dict[str, Any] = await scheduler_status(
            redis, work.context.settings.redis_prefix, request.app.state.scheduler
        )
        queues = []
        for name, broker in work.brokers.items():
            if isinstance(broker, RedisStreamBroker) and redis is not None:
                stream = broker.queue_name
                length = await redis.xlen(stream) if await redis.exists(stream) else 0
                pending = 0
                if length:
                    groups = await redis.xinfo_groups(stream)
                    pending = sum(int(g["pending"]) for g in groups)
                queues.append(QueueStatus(name=name, backend="redis-stream", length=length, pending=pending))
            else:
                queues.append(QueueStatus(name=name, backend="in-process"))
        return BackgroundStatus(scheduler=SchedulerStatus(**status), queues=queues)
