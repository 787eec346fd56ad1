"""The task registry, the queues' brokers and the retry backoff."""

from __future__ import annotations

import statistics

import pytest
from taskiq import InMemoryBroker
from taskiq.message import TaskiqMessage

from naboom.background.broker import QUEUES, BackoffRetryMiddleware, TaskQueue, create_broker, load_tasks
from naboom.settings import Settings


def _message() -> TaskiqMessage:
    return TaskiqMessage(task_id="t", task_name="x", labels={}, args=[], kwargs={})


def test_backoff_doubles_per_retry_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    middleware = BackoffRetryMiddleware(base=2.0, cap=10.0)
    for retries, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (9, 10.0)]:
        delays = [middleware.make_delay(_message(), retries) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (retries, min(delays), max(delays))
        assert statistics.pstdev(delays) > 0  # jittered, so retries of many tasks spread out


def test_each_queue_broker_registers_exactly_its_own_tasks() -> None:
    settings = Settings.from_env({"NABOOM_VAR_DIR": "var-test-unused", "NABOOM_SECRET_KEY": "k"})
    specs = load_tasks()
    assert {spec.queue for spec in specs.values()} <= set(QUEUES)
    for queue in QUEUES:
        broker = create_broker(settings, queue)
        assert isinstance(broker, InMemoryBroker)
        registered = set(broker.get_all_tasks())
        assert registered == {name for name, spec in specs.items() if spec.queue == queue}


def test_periodic_and_retrying_tasks_carry_their_labels() -> None:
    settings = Settings.from_env({"NABOOM_VAR_DIR": "var-test-unused", "NABOOM_SECRET_KEY": "k"})
    specs = load_tasks()
    scheduled = [spec for spec in specs.values() if spec.schedule is not None]
    assert scheduled, "no periodic task declared"
    for spec in scheduled:
        assert spec.labels(settings)["schedule"], spec.name
    for spec in specs.values():
        labels = spec.labels(settings)
        assert labels["retry_on_error"] is spec.retry
        if spec.retry:
            assert labels["max_retries"] > settings.sms_max_attempts


async def test_queueing_a_function_that_is_not_a_task_is_refused() -> None:
    settings = Settings.from_env({"NABOOM_VAR_DIR": "var-test-unused", "NABOOM_SECRET_KEY": "k"})

    async def not_a_task() -> None: ...

    with pytest.raises(LookupError, match="not a declared task"):
        await TaskQueue(settings, {}).kick(not_a_task)
