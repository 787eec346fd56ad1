"""On embedded defaults (SQLite, the embedded broker) the bridge runs in the API process and polls."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.outbox_helpers import subscriber
from tests.support import Server, Stack, publish, publisher, sos, wait_for_sync

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    stack = Stack(
        var_dir=tmp_path_factory.mktemp("embedded-var"),
        database_url=None,
        redis_url=None,
        mqtt_url=None,
        extra={"NABOOM_BRIDGE_POLL_SECONDS": "0.5"},
    )
    stack.cli("migrate")
    srv = Server(stack, tmp_path_factory.mktemp("embedded-logs") / "serve.log")
    srv.start()
    yield srv
    srv.stop()


def test_embedded_sos_is_acknowledged_on_the_embedded_broker(embedded: Server) -> None:
    stack = embedded.stack
    _, device, _ = stack.new_region()
    topic = f"panic/ack/{device['pid']}"
    message = sos(device)
    with subscriber(*stack.mqtt_address, topic) as sub, publisher(*stack.mqtt_address) as pub:
        publish(pub, f"panic/ingest/{device['pid']}", message)
        (ack,) = wait_for_sync(lambda: sub.on(topic), what="the received ack from the embedded broker")
    assert ack["status"] == "received" and ack["nonce"] == message["nonce"]
    incidents = stack.get("/api/incidents", stack.admin())["items"]
    assert ack["incident_id"] in {i["id"] for i in incidents}
