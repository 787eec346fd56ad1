"""Task runs are counted and timed by queue (embedded defaults: tasks run in this process)."""

from __future__ import annotations

from pathlib import Path

from naboom.background.broker import open_work
from naboom.operations.instruments import REGISTRY
from naboom.operations.tasks import general_heartbeat
from naboom.settings import Settings
from tests.support import wait_for


def _runs(queue: str, result: str) -> float:
    labels = {"queue": queue, "task": "operations.tasks.general_heartbeat", "result": result}
    return REGISTRY.get_sample_value("naboom_tasks_total", labels) or 0.0


async def test_a_task_run_is_counted_and_timed_by_queue(tmp_path: Path) -> None:
    settings = Settings.from_env({"NABOOM_VAR_DIR": str(tmp_path)})
    before = _runs("general", "ok")
    timed = REGISTRY.get_sample_value("naboom_task_duration_seconds_count", {"queue": "general"}) or 0.0
    async with open_work(settings, worker=True) as work:
        await work.tasks.kick(general_heartbeat)
        await wait_for(lambda: _runs("general", "ok") == before + 1, what="the run counted")
    assert REGISTRY.get_sample_value("naboom_task_duration_seconds_count", {"queue": "general"}) == timed + 1
