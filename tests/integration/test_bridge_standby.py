"""Two bridges on one database: one publishes, the other stands by and takes over when it stops."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.outbox_helpers import subscriber
from tests.support import MQTT_HOST, MQTT_PORT, Process, Server, Stack, sos, wait_for_sync


@pytest.fixture(scope="module")
def stack(real_stack: Stack) -> Stack:
    # The API runs without a bridge of its own: the two `naboom bridge` processes are the only ones.
    return dataclasses.replace(real_stack, extra={**real_stack.extra, "NABOOM_BRIDGE_ENABLED": "false"})


@pytest.fixture(scope="module")
def api(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(stack, tmp_path_factory.mktemp("logs") / "serve.log")
    srv.start()
    yield srv
    srv.stop()


def _bridge(stack: Stack, log: Path, ready: str) -> Process:
    # Each process would take the other's MQTT client id otherwise; the lock, not the id, keeps one active.
    named = dataclasses.replace(stack, client_id=f"{stack.client_id}-{log.stem}")
    return Process(named, log, "bridge", ready=ready)


def test_only_one_bridge_publishes_and_the_standby_takes_over(
    stack: Stack, api: Server, tmp_path: Path
) -> None:
    first = _bridge(stack, tmp_path / "first.log", ready="outbox bridge active")
    second = _bridge(stack, tmp_path / "second.log", ready="standing by")
    first.start()
    second.start()
    try:
        _, device, _ = stack.new_region()
        topic = f"panic/ack/{device['pid']}"
        with subscriber(MQTT_HOST, MQTT_PORT, topic) as sub:
            for _ in range(3):
                assert stack.submit(sos(device)).status_code == 201
            acks = wait_for_sync(lambda: sub.at_least(topic, 3), what="three acks")
            assert len({a["incident_id"] for a in acks}) == 3
            # The bridge logs after the broker's PUBACK and its own commit, so a subscriber can see the ack first.
            wait_for_sync(lambda: "published" in first.log(), what="the first bridge to log its publish")
            assert "published" not in second.log()

            first.stop()
            wait_for_sync(lambda: "outbox bridge active" in second.log(), what="the standby to take over")
            assert stack.submit(sos(device)).status_code == 201
            wait_for_sync(lambda: sub.at_least(topic, 4), what="the ack published by the new active bridge")
            wait_for_sync(lambda: "published" in second.log(), what="the new active bridge to log its publish")
            assert len(sub.on(topic)) == 4
    finally:
        first.stop()
        second.stop()
