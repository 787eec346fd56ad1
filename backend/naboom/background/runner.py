"""The worker and scheduler processes (``naboom worker``, ``naboom scheduler``)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from taskiq.api import run_receiver_task

from naboom.background.broker import Queue, Work, open_work
from naboom.background.scheduler import run_scheduler
from naboom.settings import Settings

log = logging.getLogger(__name__)


async def _until_stopped(run: Callable[[Work], Coroutine[Any, Any, object]], settings: Settings, *, worker: bool) -> None:
    """Run ``run(work)`` until SIGTERM/SIGINT, then shut down cleanly, or within the shutdown timeout.

    A stop that does not finish within ``NABOOM_SHUTDOWN_TIMEOUT_SECONDS`` ends the process
    anyway: a task message it took and did not acknowledge stays pending in the Redis stream
    and another worker takes it over after the idle timeout, so nothing is lost by leaving.
    (Seen under load: taskiq's receiver waiting on a stream read whose cancellation never
    arrived, after Redis had lost the stream.)
    """
    loop = asyncio.get_running_loop()
    async with open_work(settings, worker=worker) as work:
        main: asyncio.Task[object] = asyncio.create_task(run(work))
        signalled = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, signalled.set)
        stop = asyncio.create_task(signalled.wait())
        await asyncio.wait({main, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if main.done():
            main.result()  # ended on its own: say why
            return
        log.info("stopping")
        main.cancel()
        grace = settings.shutdown_timeout_seconds
        done, _ = await asyncio.wait({main}, timeout=grace)
        if not done:
            log.error("did not stop within %.0f s; exiting anyway (unacknowledged tasks are taken over by another worker)", grace)
            logging.shutdown()
            os._exit(1)


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
