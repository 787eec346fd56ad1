"""Two API/ingest processes split the MQTT load through ``$share`` and share the live feed through Redis."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.live import SseClient
from tests.support import Server, Stack, drop_mqtt_session, free_port, psql, publish, publisher, sos, wait_for

COUNT = 40


@pytest.fixture(scope="module")
def pair(real_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    group = {"NABOOM_MQTT_SHARE_GROUP": f"g{uuid.uuid4().hex[:6]}"}
    first = dataclasses.replace(real_stack, extra=group)
    second = dataclasses.replace(
        real_stack, http_port=free_port(), client_id=f"naboom-test-{uuid.uuid4().hex[:8]}", extra=group
    )
    logs: Path = tmp_path_factory.mktemp("pair")
    servers = (Server(first, logs / "a.log"), Server(second, logs / "b.log"))
    for srv in servers:
        srv.start()
    yield servers
    for srv in servers:
        srv.stop()
    drop_mqtt_session(second.client_id)


async def test_two_processes_share_the_ingest_and_both_feeds_see_every_incident(pair: tuple[Server, Server]) -> None:
    a, b = pair
    region, device, token = a.stack.new_region()

    async with SseClient(a.stack.base_url, token, region) as on_a, SseClient(b.stack.base_url, token, region) as on_b:
        with publisher(*a.stack.mqtt_address) as client:
            for _ in range(COUNT):
                publish(client, f"panic/ingest/{device['pid']}", sos(device))

        async def all_seen() -> bool:
            return len(on_a.incidents()) == COUNT and len(on_b.incidents()) == COUNT

        await wait_for(all_seen, timeout=30, what=f"{COUNT} incidents on both processes' feeds")

    assert {e["id"] for e in on_a.incidents()} == {e["id"] for e in on_b.incidents()}
    assert psql(a.stack.database_url or "", f"SELECT count(*) FROM incident WHERE device_pid = '{device['pid']}'") == str(COUNT)
    admin = a.stack.admin()
    accepted = [srv.stack.get("/api/ingest/stats", admin)["accepted"] for srv in pair]
    assert sum(accepted) == COUNT and all(n > 0 for n in accepted), accepted
