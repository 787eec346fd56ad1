"""The Redis task queue survives losing its stream: a worker declares its group again and goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from naboom.background.broker import open_work
from naboom.notify.tasks import sweep_outbox
from naboom.settings import Settings
from tests.support import REDIS_URL, Stack, wait_for, worker


async def test_a_worker_keeps_working_after_redis_loses_the_task_stream(
    real_stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    logs: Path = tmp_path_factory.mktemp("task-queue")
    proc = worker(real_stack, logs / "worker.log", "critical")
    await asyncio.to_thread(proc.start)  # start() waits with an event loop of its own
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        stream = f"{real_stack.redis_prefix}:tasks:critical"
        # What a Redis restart without persistence, or a flush, does to the queue under the worker.
        assert await r.delete(stream) == 1
        await wait_for(lambda: "unavailable" in proc.log(), timeout=30, what="the worker to notice the lost stream")
        async with open_work(Settings.from_env(real_stack.env())) as work:
            await work.tasks.kick(sweep_outbox)
        await wait_for(
            lambda: "Executing task notify.tasks.sweep_outbox" in proc.log(),
            timeout=30,
            what="the worker to run a task queued after the stream came back",
        )
        assert proc.proc is not None and proc.proc.poll() is None
    finally:
        proc.stop()
        await r.aclose()
