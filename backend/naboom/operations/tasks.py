"""Worker heartbeats: a scheduled no-op per queue that records when a worker of that queue last ran."""

from __future__ import annotations

from naboom.background.broker import QUEUES, Queue, WorkDep, every, task

HEARTBEAT_SECONDS = 30


def heartbeat_key(queue: Queue) -> str:
    """The store key that holds the last heartbeat of ``queue``'s workers (Unix seconds)."""
    return f"heartbeat:{queue}"


async def _beat(work: WorkDep, queue: Queue) -> None:
    # Expiry well past the check's own threshold: a missing key means no worker for a long time.
    await work.store.set(
        heartbeat_key(queue), str(work.clock().timestamp()), expires_in=HEARTBEAT_SECONDS * 20
    )


@task("critical", schedule=every(lambda s: HEARTBEAT_SECONDS))
async def critical_heartbeat(work: WorkDep) -> None:
    """Proves a worker takes ``critical`` tasks."""
    await _beat(work, "critical")


@task("general", schedule=every(lambda s: HEARTBEAT_SECONDS))
async def general_heartbeat(work: WorkDep) -> None:
    """Proves a worker takes ``general`` tasks."""
    await _beat(work, "general")


assert set(QUEUES) == {"critical", "general"}, "a new queue needs its heartbeat task"
