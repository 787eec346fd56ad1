"""The metrics this process keeps in memory; imported by the code it measures (no app imports here)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from taskiq import TaskiqMessage, TaskiqMiddleware, TaskiqResult

if TYPE_CHECKING:
    from naboom.ingest.schemas import Envelope

REGISTRY = CollectorRegistry(auto_describe=True)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

INGEST_LATENCY = Histogram(
    "naboom_ingest_latency_seconds",
    "From the device's timestamp (since=device) or the broker's delivery (since=receipt) to the commit",
    ["since"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
INGEST_BATCH_SIZE = Histogram(
    "naboom_ingest_batch_size",
    "Messages per committed MQTT ingest batch (are batches filling under load?)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
    registry=REGISTRY,
)
BROADCAST_LATENCY = Histogram(
    "naboom_broadcast_latency_seconds",
    "From the commit of a batch to its live-feed broadcast",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
BROADCAST_FAILURES = Counter(
    "naboom_broadcast_failures", "Live-feed broadcasts that failed after their commit", registry=REGISTRY
)
LIVE_CONNECTIONS = Gauge(
    "naboom_live_connections", "Open live-feed connections of this process", ["transport"], registry=REGISTRY
)
TELEMETRY = Counter(
    "naboom_telemetry_messages",
    "Device telemetry reports by outcome (stored, stale, rejected, failed) and reason",
    ["outcome", "reason"],
    registry=REGISTRY,
)
TASKS = Counter(
    "naboom_tasks", "Task runs finished in this process", ["queue", "task", "result"], registry=REGISTRY
)
TASK_LATENCY = Histogram(
    "naboom_task_duration_seconds",
    "How long task runs took",
    ["queue"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)


def observe_commit(envelopes: Sequence[Envelope], device_times: Iterable[datetime]) -> None:
    """Latency of a committed batch: from each message's receipt and each new incident's device time."""
    now = datetime.now(UTC)
    receipt = INGEST_LATENCY.labels("receipt")
    for envelope in envelopes:
        receipt.observe(max(0.0, (now - envelope.received_at).total_seconds()))
    device = INGEST_LATENCY.labels("device")
    for ts in device_times:
        device.observe(max(0.0, (now - ts).total_seconds()))


class TaskMetricsMiddleware(TaskiqMiddleware):
    """Counts task runs by queue, task and result, and times them."""

    def __init__(self, queue: str) -> None:
        super().__init__()
        self.queue = queue
        self._started: dict[str, float] = {}

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        """Note the start."""
        self._started[message.task_id] = time.monotonic()
        return message

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        """Count and time the run."""
        started = self._started.pop(message.task_id, None)
        if started is not None:
            TASK_LATENCY.labels(self.queue).observe(time.monotonic() - started)
        TASKS.labels(self.queue, message.task_name, "error" if result.is_err else "ok").inc()
