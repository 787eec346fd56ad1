"""``naboom scheduler``: of two started against one Redis, only the leader sends the periodic tasks,
and the other takes over when the leader dies.

Both schedulers, a critical-queue worker and ``naboom serve`` belong to the same installation
(same database and Redis key prefix); the schedule is shortened (the escalation check every
second, a lock that expires after a few seconds) so the test waits seconds, not minutes. What
each scheduler process has sent is read from ``GET /api/system/background``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.api_helpers import Api
from tests.support import NABOOM, Process, Server, Stack, scheduler, wait_for, worker

# Several sends: more than a single lucky tick.
SEVERAL = 3


@pytest.fixture(scope="module")
def fast(server: Server) -> Stack:
    """The server's installation with a schedule measured in seconds."""
    extra = {"NABOOM_ESCALATION_CHECK_SECONDS": "1", "NABOOM_SCHEDULER_LOCK_SECONDS": "3"}
    return dataclasses.replace(server.stack, extra={**server.stack.extra, **extra})


@pytest.fixture(scope="module")
def admin(server: Server) -> Api:
    return Api(server.stack, server.stack.admin())


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    """Processes started by a test, stopped after it whatever happened."""
    started: list[Process] = []
    yield started
    for process in started:
        process.stop()


async def _start(processes: list[Process], process: Process) -> Process:
    processes.append(process)
    await asyncio.to_thread(process.start)  # it waits for the ready line with its own event loop
    return process


def _instance(process: Process) -> str:
    """How a scheduler process names itself in Redis and in the API."""
    assert process.proc is not None
    return f"{socket.gethostname()}:{process.proc.pid}"


def _scheduler_status(admin: Api) -> dict[str, Any]:
    return dict(admin.ok("GET", "/api/system/background")["scheduler"])


async def test_of_two_schedulers_only_the_leader_sends_and_the_other_takes_over_when_it_is_killed(
    fast: Stack, admin: Api, processes: list[Process], tmp_path: Path
) -> None:
    critical = await _start(processes, worker(fast, tmp_path / "worker.log", "critical"))
    first = await _start(processes, scheduler(fast, tmp_path / "first.log"))
    second = await _start(processes, scheduler(fast, tmp_path / "second.log"))
    names = {_instance(first): first, _instance(second): second}

    def led() -> dict[str, Any] | None:
        status = _scheduler_status(admin)
        return status if status["leader"] in names else None

    status = await wait_for(led, what="one of the two schedulers to lead")
    assert status["mode"] == "redis"
    leader = status["leader"]
    # Counted from now, while both run: the standby has had every chance to send too.
    baseline = status["sent"].get(leader, 0)

    def led_for_a_while() -> dict[str, Any] | None:
        status = _scheduler_status(admin)
        return status if status["sent"].get(leader, 0) >= baseline + SEVERAL else None

    status = await wait_for(led_for_a_while, what=f"the leader to send {SEVERAL} more periodic tasks")
    assert status["leader"] == leader
    (standby,) = set(names) - {leader}
    assert status["sent"].get(standby, 0) == 0, status
    assert "is the leader" in names[leader].log() and "standing by" not in names[leader].log()
    assert "standing by" in names[standby].log() and "is the leader" not in names[standby].log()
    # What the leader sends is run: the worker executes the escalation check it scheduled.
    await wait_for(
        lambda: "escalation.tasks.check_escalations" in critical.log(), what="the worker to run the periodic check"
    )

    names[leader].kill(signal.SIGKILL)
    sent_by_the_dead = _scheduler_status(admin)["sent"][leader]

    def taken_over() -> dict[str, Any] | None:
        status = _scheduler_status(admin)
        return status if status["leader"] == standby and status["sent"].get(standby, 0) >= SEVERAL else None

    status = await wait_for(taken_over, what="the standby to take the lock and send the periodic tasks")
    assert status["sent"][leader] == sent_by_the_dead
    assert "is the leader" in names[standby].log()


def test_the_scheduler_without_redis_exits_saying_it_needs_redis(real_stack: Stack) -> None:
    env = {k: v for k, v in real_stack.env().items() if k != "NABOOM_REDIS_URL"}
    done = subprocess.run([NABOOM, "scheduler"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "naboom scheduler needs NABOOM_REDIS_URL" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
