"""Prometheus metrics: counters and histograms this process keeps, plus a snapshot read at scrape time.

Each process (API, workers) exports its own; the scrape-time snapshot (queue depths, SMS by
status, breakers, outbox, silent devices) is the same from any API process.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime

from litestar import Request, Response, get
from litestar.datastructures import State
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from taskiq_redis import RedisStreamBroker

from naboom.background.broker import QUEUES, Work
from naboom.db import models as m
from naboom.errors import AuthenticationError
from naboom.notify.sender import provider_status
from naboom.operations.instruments import REGISTRY
from naboom.operations.tasks import heartbeat_key
from naboom.telemetry.service import count_silent

# What a scrape adds to REGISTRY's metrics (alert rules and the dashboard may use only these and those).
SNAPSHOT_METRICS = frozenset(
    {
        "naboom_ingest_messages_total",
        "naboom_mqtt_connected",
        "naboom_queue_length",
        "naboom_queue_pending",
        "naboom_worker_heartbeat_age_seconds",
        "naboom_sms_messages",
        "naboom_devices_silent",
        "naboom_sms_breaker_state",
        "naboom_outbox_backlog",
        "naboom_outbox_oldest_age_seconds",
        "naboom_bridge_healthy",
    }
)


def exported_names() -> set[str]:
    """Every sample name this app can export (histograms with their _bucket/_count/_sum)."""
    names = set(SNAPSHOT_METRICS)
    for family in REGISTRY.collect():
        if family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
        elif family.type == "counter":
            names.add(f"{family.name}_total")
        else:
            names.add(family.name)
    return names


class _Snapshot(Collector):
    """Metric families computed just before this scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _gauge(
    name: str, doc: str, labels: Sequence[str], samples: Iterable[tuple[Sequence[str], float]]
) -> Metric:
    assert name in SNAPSHOT_METRICS, name
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


async def snapshot(state: State) -> list[Metric]:
    """What the deployment looks like now: ingest decisions, queues, SMS, breakers, outbox, workers."""
    work: Work = state.work
    families: list[Metric] = []

    counters = state.ingest.service.counters
    ingest = CounterMetricFamily(
        "naboom_ingest_messages",
        "SOS messages this process decided, by outcome and rejection reason",
        labels=["outcome", "reason"],
    )
    ingest.add_metric(["accepted", ""], counters.accepted)
    ingest.add_metric(["duplicate", ""], counters.duplicates)
    for reason, count in sorted(counters.rejected.items()):
        ingest.add_metric(["rejected", reason], count)
    families.append(ingest)

    mqtt = state.mqtt
    if mqtt is not None:
        families.append(
            _gauge(
                "naboom_mqtt_connected",
                "1 while the ingest holds its MQTT subscription",
                [],
                [((), float(mqtt.connected.is_set()))],
            )
        )

    redis = work.context.redis
    depths: list[tuple[Sequence[str], float]] = []
    pending: list[tuple[Sequence[str], float]] = []
    for name, broker in work.brokers.items():
        if isinstance(broker, RedisStreamBroker) and redis is not None:
            stream = broker.queue_name
            length = await redis.xlen(stream) if await redis.exists(stream) else 0
            waiting = sum(int(g["pending"]) for g in await redis.xinfo_groups(stream)) if length else 0
            depths.append(((name,), float(length)))
            pending.append(((name,), float(waiting)))
    if depths:
        families.append(
            _gauge(
                "naboom_queue_length",
                "Entries in a task queue's stream (capped, includes done)",
                ["queue"],
                depths,
            )
        )
        families.append(
            _gauge(
                "naboom_queue_pending",
                "Task messages handed to a worker and not yet acknowledged",
                ["queue"],
                pending,
            )
        )

    now = work.context.clock().timestamp()
    ages = []
    for queue in QUEUES:
        raw = await work.context.store.get(heartbeat_key(queue))
        # No heartbeat at all reads as "very old", so the alert fires for a deployment without workers.
        ages.append(((queue,), now - float(raw) if raw else float("inf")))
    families.append(
        _gauge(
            "naboom_worker_heartbeat_age_seconds",
            "Seconds since a worker of the queue last ran its heartbeat",
            ["queue"],
            ages,
        )
    )

    async with state.db.get_session() as session:
        rows = (
            await session.execute(
                select(m.OutboundMessage.status, func.count()).group_by(m.OutboundMessage.status)
            )
        ).all()
        silent = await count_silent(
            session, datetime.fromtimestamp(now, UTC), work.context.settings.device_heartbeat_seconds
        )
    families.append(
        _gauge(
            "naboom_sms_messages",
            "Outbound SMS by status",
            ["status"],
            [((str(s),), float(c)) for s, c in rows],
        )
    )
    families.append(
        _gauge(
            "naboom_devices_silent",
            "Active devices silent for longer than their expected heartbeat",
            [],
            [((), float(silent))],
        )
    )

    providers = await provider_status(work.context)
    families.append(
        _gauge(
            "naboom_sms_breaker_state",
            "1 for the SMS provider's current breaker state",
            ["provider", "state"],
            [
                ((p.name, s), float(p.breaker.state == s))
                for p in providers
                for s in ("closed", "open", "half_open")
            ],
        )
    )

    bridge = getattr(state, "bridge", None)
    if bridge is not None:
        status = bridge.status()
        families.append(
            _gauge(
                "naboom_outbox_backlog",
                "Outbox rows not yet published",
                [],
                [((), float(status.get("backlog") or 0))],
            )
        )
        families.append(
            _gauge(
                "naboom_outbox_oldest_age_seconds",
                "Age of the oldest unpublished outbox row",
                [],
                [((), float(status.get("oldest_age_seconds") or 0))],
            )
        )
        families.append(
            _gauge(
                "naboom_bridge_healthy",
                "1 while the outbox bridge is healthy",
                [],
                [((), float(bool(status.get("healthy"))))],
            )
        )
    return families


def _authorize(request: Request) -> None:
    token = request.app.state.settings.metrics_token
    if not token:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise AuthenticationError("metrics need the bearer token configured in NABOOM_METRICS_TOKEN")


# Not in the OpenAPI document: it is for Prometheus, not API clients (README documents it).
@get("/metrics", tags=["ops"], exclude_from_auth=True, include_in_schema=False, media_type=CONTENT_TYPE_LATEST)
async def metrics(request: Request) -> Response[bytes]:
    """Prometheus text format; needs ``Authorization: Bearer <NABOOM_METRICS_TOKEN>`` when that is set."""
    _authorize(request)
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_Snapshot(await snapshot(request.app.state)))
    body = generate_latest(REGISTRY) + generate_latest(scrape)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
