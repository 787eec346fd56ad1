"""The worker and scheduler processes (``naboom worker``, ``naboom scheduler``)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable

from taskiq.api import run_receiver_task

from naboom.background.broker import Queue, Work, open_work
from naboom.background.scheduler import run_scheduler
from naboom.settings import Settings

log = logging.getLogger(__name__)


async def _until_stopped(run: Callable[[Work], Awaitable[object]], settings: Settings, *, worker: bool) -> None:
    """Run ``run(work)`` until SIGTERM/SIGINT, then shut down cleanly."""
    loop = asyncio.get_running_loop()
    async with open_work(settings, worker=worker) as work:
        main = asyncio.create_task(run(work))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, main.cancel)
        try:
            await main
        except asyncio.CancelledError:
            log.info("stopping")


async def run_worker(settings: Settings, queues: Iterable[str]) -> None:
    """Receive and run the tasks of ``queues`` until stopped."""
    wanted: list[Queue] = [q for q in ("critical", "general") if q in set(queues)]

    async def receive(work: Work) -> None:
        log.info("worker for %s ready", ", ".join(wanted))
        await asyncio.gather(
            *(
                run_receiver_task(
                    work.brokers[q],
                    max_async_tasks=settings.worker_concurrency,
                    max_prefetch=settings.worker_concurrency,
                    run_startup=False,
                )
                for q in wanted
            )
        )

    await _until_stopped(receive, settings, worker=True)


async def run_scheduler_process(settings: Settings) -> None:
    """Send the periodic tasks while this process holds the scheduler lock, until stopped."""
    if settings.redis_url is None:
        raise SystemExit("naboom scheduler needs NABOOM_REDIS_URL; on embedded defaults the API process schedules")
    await _until_stopped(run_scheduler, settings, worker=False)
