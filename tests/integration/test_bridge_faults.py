"""The bridge under faults: the broker away while incidents change, its database connection killed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.incident_helpers import act, ok
from tests.integration.outbox_helpers import (
    Mosquitto,
    Subscriber,
    bridge_backends,
    bridge_status,
    health,
    outbox_rows,
    subscriber,
)
from tests.support import Server, Stack, fresh_stack, psql, serving, sos, wait_for_sync


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A broker this module may stop and start again."""
    with Mosquitto(tmp_path_factory.mktemp("mosquitto")) as mosquitto:
        yield mosquitto


@pytest.fixture(scope="module")
def stack(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Polling this slowly cannot explain a prompt delivery: the NOTIFY (re-LISTENed after a reconnect) must.
    with fresh_stack(tmp_path_factory, f"mqtt://127.0.0.1:{broker.port}",
                     {"NABOOM_BRIDGE_POLL_SECONDS": "30"}) as stack:
        yield stack


@pytest.fixture(scope="module")
def served(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(stack, tmp_path_factory) as srv:
        yield srv


@pytest.fixture
def sub(broker: Mosquitto) -> Iterator[Subscriber]:
    with subscriber("127.0.0.1", broker.port, "panic/ack/#", "panic/alerts/#") as client:
        yield client


def _last_id(stack: Stack) -> int:
    assert stack.database_url is not None
    return int(psql(stack.database_url, "SELECT coalesce(max(id), 0) FROM outbox_message"))


def test_broker_away_backlog_grows_then_drains_in_order_once(
    stack: Stack, served: Server, broker: Mosquitto, sub: Subscriber
) -> None:
    devices = [stack.create_device(f"btn-out-{n}-{stack.client_id[-8:]}", "ZA-OUT") for n in range(2)]
    token = stack.operator("ZA-OUT")
    before = _last_id(stack)

    broker.stop()
    wait_for_sync(lambda: not bridge_status(stack)["mqtt_connected"], what="the bridge to notice the broker left")
    for device in devices:
        r = stack.submit(sos(device))
        assert r.status_code == 201, r.text
        incident_id = r.json()["incident_id"]
        ok(act(stack, token, incident_id, "acknowledge"))
        ok(act(stack, token, incident_id, "resolve"))

    # Three acks and three summaries per device wait in the outbox, and health says so.
    status = wait_for_sync(
        lambda: (s := bridge_status(stack))["backlog"] >= 12 and s, what="the backlog to show in the bridge status"
    )
    assert status["role"] == "active" and status["healthy"] is False
    assert status["oldest_age_seconds"] is not None
    code, body = health(stack)
    assert code == 503 and body["parts"]["bridge"]["backlog"] >= 12

    broker.start()
    expected = [(topic, payload) for topic, payload, _ in outbox_rows(stack, f"id > {before}")]
    assert len(expected) == 12
    wait_for_sync(
        lambda: all(done for *_, done in outbox_rows(stack, f"id > {before}")), what="every row to be published"
    )
    received = wait_for_sync(
        lambda: (got := [m for m in sub.all() if m in expected]) and len(got) >= len(expected) and got,
        what="the subscriber to receive the backlog",
    )
    assert received == expected
    wait_for_sync(lambda: bridge_status(stack)["backlog"] == 0, what="the backlog to drain")
    wait_for_sync(lambda: health(stack)[0] == 200, what="health to recover")


def test_killed_database_connection_reconnects_relistens_and_delivers(
    stack: Stack, served: Server, sub: Subscriber
) -> None:
    device = stack.create_device(f"btn-kill-{stack.client_id[-8:]}", "ZA-KILL")
    assert stack.database_url is not None
    (old,) = wait_for_sync(lambda: bridge_backends(stack), what="the bridge's connection")
    psql(stack.database_url, f"SELECT pg_terminate_backend({old})")

    # Written while the bridge may still be without its connection: delivered once it is back.
    first = stack.submit(sos(device)).json()["incident_id"]
    (new,) = wait_for_sync(
        lambda: (pids := bridge_backends(stack)) and old not in pids and pids, what="the bridge to reconnect"
    )
    assert new != old
    wait_for_sync(lambda: bridge_status(stack)["role"] == "active", what="the bridge to lead again")

    # Written after the reconnect: its NOTIFY wakes the bridge well before the next 30 s poll.
    second = stack.submit(sos(device)).json()["incident_id"]
    acks = wait_for_sync(lambda: sub.at_least(f"panic/ack/{device['pid']}", 2), timeout=15, what="both acks")
    assert [a["incident_id"] for a in acks] == [first, second]
    assert all(done for *_, done in outbox_rows(stack))
