"""Brokers, the task registry and what a task gets to work with.

Two queues: ``critical`` (alerts, escalation) and ``general`` (housekeeping). With Redis each
is a taskiq-redis ``RedisStreamBroker``: a worker acknowledges a message after the task ran,
and a message a dead worker held is claimed by another after ``task_idle_timeout_seconds``.
On embedded defaults each is an ``InMemoryBroker`` that runs tasks inside the API process.

Tasks are plain async functions in their domain's ``tasks.py``, declared with :func:`task`
(queue, retry, schedule). They receive a :class:`WorkContext` through ``TaskiqDepends`` and
can be called directly in tests with one.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

import httpx
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from taskiq import AckableMessage, AsyncBroker, Context, InMemoryBroker, TaskiqDepends
from taskiq.kicker import AsyncKicker
from taskiq.message import TaskiqMessage
from taskiq.middlewares import SmartRetryMiddleware
from taskiq_redis import RedisStreamBroker

from naboom.operations.instruments import TaskMetricsMiddleware
from naboom.realtime.feed import LiveFeed, open_feed
from naboom.settings import Settings

log = logging.getLogger(__name__)

Queue = Literal["critical", "general"]
QUEUES: tuple[Queue, ...] = ("critical", "general")

# Every module that declares tasks; imported before a broker registers them.
TASK_MODULES = (
    "naboom.notify.tasks",
    "naboom.escalation.tasks",
    "naboom.retention.tasks",
    "naboom.coverage.tasks",
    "naboom.operations.tasks",
    "naboom.telemetry.tasks",
)

REDIS_STREAM_MAXLEN = 100_000

P = ParamSpec("P")
R = TypeVar("R")


def utcnow() -> datetime:
    """The wall clock, in UTC (tasks take it from their context so tests can set it)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A declared task: where it runs and how."""

    func: Callable[..., Awaitable[Any]]
    name: str
    queue: Queue
    retry: bool
    # The schedule labels of a periodic task, computed from the settings (TaskIQ's format).
    schedule: Callable[[Settings], list[dict[str, Any]]] | None

    def labels(self, settings: Settings) -> dict[str, Any]:
        """The TaskIQ labels this task is registered with."""
        labels: dict[str, Any] = {"retry_on_error": self.retry}
        if self.retry:
            labels["max_retries"] = settings.sms_max_attempts + 1
            labels["delay"] = settings.sms_retry_base_seconds
        if self.schedule is not None:
            labels["schedule"] = self.schedule(settings)
        return labels


REGISTRY: dict[str, TaskSpec] = {}


def task(
    queue: Queue,
    *,
    retry: bool = False,
    schedule: Callable[[Settings], list[dict[str, Any]]] | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Declare a task of ``queue``; ``retry`` re-runs it with backoff when it raises :class:`RetryLater`."""

    def declare(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        name = f"{func.__module__.removeprefix('naboom.')}.{func.__name__}"
        REGISTRY[name] = TaskSpec(func, name, queue, retry, schedule)
        return func

    return declare


def every(seconds: Callable[[Settings], int]) -> Callable[[Settings], list[dict[str, Any]]]:
    """A schedule: every ``seconds(settings)`` seconds."""
    return lambda settings: [{"interval": seconds(settings)}]


def daily(cron: str) -> Callable[[Settings], list[dict[str, Any]]]:
    """A schedule: a cron line in UTC."""
    return lambda settings: [{"cron": cron}]


class RetryLater(Exception):
    """Raised by a task to be run again after a backoff (only tasks declared with ``retry``)."""


def load_tasks() -> Mapping[str, TaskSpec]:
    """Import every task module, so the registry is complete."""
    for module in TASK_MODULES:
        importlib.import_module(module)
    return REGISTRY


class BackoffRetryMiddleware(SmartRetryMiddleware):
    """TaskIQ's retry middleware with exponential backoff and full jitter.

    The retry is kicked after the delay by the worker that ran the failed attempt, while the
    failed message is still unacknowledged in the stream: if that worker dies meanwhile, the
    message is claimed by another worker and the task runs again. The delay is therefore capped
    below the idle timeout after which a message counts as abandoned.
    """

    def __init__(self, *, base: float, cap: float) -> None:
        super().__init__(
            default_retry_count=1, default_retry_label=False, default_delay=base, use_jitter=True, max_delay_exponent=cap
        )
        self._base = base
        self._cap = cap

    def make_delay(self, message: TaskiqMessage, retries: int) -> float:
        """``base * 2^(retries-1)``, capped, with jitter over its upper half."""
        delay = min(self._base * 2 ** (retries - 1), self._cap)
        return delay / 2 + random.random() * delay / 2

    async def on_send(self, kicker: AsyncKicker[Any, Any], message: TaskiqMessage, delay: float) -> None:
        """Wait out the delay, then queue the retry."""
        await asyncio.sleep(delay)
        await kicker.kiq(*message.args, **message.kwargs)

    def _get_types_of_exceptions(self, message: TaskiqMessage) -> Any:
        return [RetryLater]


class ReclaimingStreamBroker(RedisStreamBroker):
    """taskiq-redis's stream broker, claiming abandoned messages on every poll.

    The stock ``listen`` only runs ``XAUTOCLAIM`` after a read that returned new messages, so a
    task held by a dead worker waits for unrelated traffic before anyone takes it over
    (taskiq-redis PRs #82, #129); its claim lock also never expires without a timeout (#131).
    ``XAUTOCLAIM`` is atomic on its own: two workers never claim the same message, so no lock.
    """

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        """New messages, then messages idle longer than ``idle_timeout`` (claimed to this worker).

        Redis going away or losing the stream (a restart without persistence, a flush) does not
        end the loop: it waits, declares the consumer group again and goes on.
        """
        failures = 0
        while True:
            try:
                async for message in self._poll():
                    failures = 0
                    yield message
            except (RedisConnectionError, RedisTimeoutError, ResponseError) as exc:
                failures += 1
                delay = min(0.5 * 2**failures, 10.0)
                log.warning("task queue %s unavailable (%s); retrying in %.1f s", self.queue_name, exc, delay)
                await asyncio.sleep(delay)
                with contextlib.suppress(RedisConnectionError, RedisTimeoutError):
                    await self._declare_consumer_group()

    async def _poll(self) -> AsyncGenerator[AckableMessage, None]:
        streams = [self.queue_name, *self.additional_streams.keys()]
        async with Redis(connection_pool=self.connection_pool) as redis:
            while True:
                fetched = await redis.xreadgroup(
                    self.consumer_group_name,
                    self.consumer_name,
                    {self.queue_name: ">", **self.additional_streams},
                    block=self.block,
                    noack=False,
                    count=self.count,
                )
                for stream, entries in fetched or []:
                    for entry_id, fields in entries:
                        yield AckableMessage(data=fields[b"data"], ack=self._ack_generator(id=entry_id, queue_name=stream))
                for stream in streams:
                    # [next start id, claimed entries(, deleted ids on Redis >= 7)]
                    reply = await redis.xautoclaim(
                        name=stream,
                        groupname=self.consumer_group_name,
                        consumername=self.consumer_name,
                        min_idle_time=self.idle_timeout,
                        count=self.unacknowledged_batch_size,
                    )
                    for entry_id, fields in reply[1]:
                        log.warning("took over task message %s of %s (its worker stopped acknowledging)", entry_id, stream)
                        yield AckableMessage(data=fields[b"data"], ack=self._ack_generator(id=entry_id, queue_name=stream))


def create_broker(settings: Settings, queue: Queue = "critical") -> AsyncBroker:
    """``RedisStreamBroker`` when Redis is configured, else ``InMemoryBroker``; tasks of ``queue`` registered."""
    broker: AsyncBroker
    if settings.redis_url is None:
        broker = InMemoryBroker(max_async_tasks=settings.worker_concurrency)
    else:
        broker = ReclaimingStreamBroker(
            url=settings.redis_url,
            queue_name=f"{settings.redis_prefix}:tasks:{queue}",
            consumer_group_name=f"{settings.redis_prefix}-{queue}",
            idle_timeout=int(settings.task_idle_timeout_seconds * 1000),
            maxlen=REDIS_STREAM_MAXLEN,
            # A consumer group created after tasks were queued (first start, or a flushed Redis)
            # starts from the stream's beginning, not from "now": queued tasks are not skipped.
            consumer_id="0",
            # Fetch no more than a worker runs at once: a message waiting in a busy worker's
            # local queue past the idle timeout would be claimed by another worker.
            xread_count=settings.worker_concurrency,
        )
    cap = min(settings.sms_retry_max_seconds, settings.task_idle_timeout_seconds / 2)
    broker.add_middlewares(BackoffRetryMiddleware(base=settings.sms_retry_base_seconds, cap=cap))
    broker.add_middlewares(TaskMetricsMiddleware(queue))
    for spec in load_tasks().values():
        if spec.queue == queue:
            broker.register_task(spec.func, task_name=spec.name, **spec.labels(settings))
    return broker


class TaskQueue:
    """Queues tasks by function: ``await tasks.kick(send_sms, message_id)``."""

    def __init__(self, settings: Settings, brokers: Mapping[Queue, AsyncBroker]) -> None:
        self._settings = settings
        self._brokers = brokers

    async def kick(self, func: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> None:
        """Queue one run of the declared task ``func``."""
        spec = _spec_of(func)
        await AsyncKicker(spec.name, self._brokers[spec.queue], spec.labels(self._settings)).kiq(*args, **kwargs)


def _spec_of(func: Callable[..., Awaitable[Any]]) -> TaskSpec:
    for spec in load_tasks().values():
        if spec.func is func:
            return spec
    raise LookupError(f"{func.__qualname__} is not a declared task")


@dataclass
class WorkContext:
    """What tasks work with: made once per process, shared by every task run."""

    settings: Settings
    db: SQLAlchemyAsyncConfig
    http: httpx.AsyncClient
    feed: LiveFeed
    tasks: TaskQueue
    # Shared state that must agree across workers (circuit breakers): Redis, or process memory.
    store: Store
    redis: Redis | None = None
    clock: Callable[[], datetime] = field(default=utcnow)


def work_context(context: Annotated[Context, TaskiqDepends()]) -> WorkContext:
    """The process's :class:`WorkContext`, for ``Annotated[WorkContext, TaskiqDepends(work_context)]``."""
    return context.state.naboom  # type: ignore[no-any-return]


WorkDep = Annotated[WorkContext, TaskiqDepends(work_context)]


@dataclass
class Work:
    """The brokers of every queue and the context their tasks run with."""

    brokers: dict[Queue, AsyncBroker]
    context: WorkContext

    @property
    def tasks(self) -> TaskQueue:
        """Queue tasks from anywhere in this process."""
        return self.context.tasks


@asynccontextmanager
async def open_work(
    settings: Settings,
    *,
    worker: bool = False,
    db: SQLAlchemyAsyncConfig | None = None,
    feed: LiveFeed | None = None,
    redis: Redis | None = None,
) -> AsyncIterator[Work]:
    """Brokers started (as a worker's or as a client's), clients made once, closed on exit.

    The API passes its own database config, live feed and Redis; a worker process makes its own.
    """
    from naboom.db.config import database_config

    async with AsyncExitStack() as stack:
        if db is None:
            db = database_config(settings)
            stack.push_async_callback(db.get_engine().dispose)
        if redis is None and settings.redis_url:
            redis = Redis.from_url(settings.redis_url)
            stack.push_async_callback(redis.aclose)
        if feed is None:
            feed = await stack.enter_async_context(open_feed(settings, redis))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=settings.sms_timeout_seconds))
        brokers: dict[Queue, AsyncBroker] = {queue: create_broker(settings, queue) for queue in QUEUES}
        store: Store = RedisStore(redis, namespace=f"{settings.redis_prefix}:work") if redis is not None else MemoryStore()
        context = WorkContext(
            settings=settings, db=db, http=http, feed=feed, tasks=TaskQueue(settings, brokers), store=store, redis=redis
        )
        for broker in brokers.values():
            broker.is_worker_process = worker
            broker.state.naboom = context
            await broker.startup()
            stack.push_async_callback(broker.shutdown)
        yield Work(brokers, context)
