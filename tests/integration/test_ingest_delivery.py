"""Exactly once across duplicates, restarts and crashes (real Mosquitto, PostgreSQL, Redis).

The ingest keeps a persistent MQTT session and acknowledges each message only after its
incident is committed, so the broker keeps (and redelivers) whatever was not yet stored, and
the ``{pid}:{nonce}`` receipt drops whatever is delivered again.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.incident_helpers import serve
from tests.integration.ingest_helpers import (
    Admin,
    CrashingStream,
    all_once,
    incidents_of,
    nonce_counts,
    receipts_of,
    wait_for_incidents,
)
from tests.support import Server, Stack, publish, publisher, sos, unique_pid, unique_region, wait_for_sync


@pytest.fixture(scope="module")
def server(real_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Attaching repeated SOS is off here: every message stored is an incident of its own, so counts compare."""
    yield from serve(real_stack, tmp_path_factory.mktemp("delivery"), attach_window=0)


@pytest.fixture(scope="module")
def admin(server: Server) -> Admin:
    return Admin.create(server.stack)


@pytest.fixture
def running(server: Server) -> Iterator[Server]:
    """The module's server, restarted after a test that stopped or killed it."""
    yield server
    if server.proc is None or server.proc.poll() is not None:
        server.proc = None
        server.start()


def _drain(server: Server, device: dict[str, Any]) -> None:
    """Publish a marker after everything else and wait for it: all earlier messages are then decided."""
    marker = sos(device, nonce=f"marker-{uuid.uuid4().hex}")
    with publisher(*server.stack.mqtt_address) as client:
        publish(client, f"panic/ingest/{device['pid']}", marker)
    wait_for_sync(
        lambda: nonce_counts(server.stack, device["pid"]).get(marker["nonce"]),
        timeout=60,
        what="the marker SOS published after the others",
    )


def _assert_each_exactly_once(server: Server, device: dict[str, Any], nonces: list[str]) -> None:
    _drain(server, device)
    counts = nonce_counts(server.stack, device["pid"])
    missing, doubled = all_once(counts, nonces)
    assert not missing, f"{len(missing)} of {len(nonces)} SOS were lost"
    assert not doubled, f"stored more than once: {doubled}"
    assert incidents_of(server.stack, device["pid"]) == len(nonces) + 1  # + the marker
    assert receipts_of(server.stack, device["pid"]) == len(nonces) + 1


def test_the_same_message_delivered_twice_yields_one_incident_and_counts_the_duplicate(
    running: Server, admin: Admin
) -> None:
    stack = running.stack
    device = stack.create_device(unique_pid("dup"), unique_region())
    payload = sos(device)
    topic = f"panic/ingest/{device['pid']}"
    duplicates_before, replays_before = admin.duplicates(), admin.rejected("replayed_nonce")

    with publisher(*stack.mqtt_address) as client:
        publish(client, topic, payload)
        publish(client, topic, payload)  # the same bytes again: a redelivery or a replay
    wait_for_sync(lambda: admin.duplicates() >= duplicates_before + 1, what="the duplicate to be counted")
    wait_for_incidents(stack, device["pid"], 1)

    # And once more over the other transport: the same message is the same incident.
    again = stack.submit(payload)
    assert again.status_code == 200, again.text

    _drain(running, device)
    assert admin.duplicates() == duplicates_before + 2
    assert nonce_counts(stack, device["pid"])[payload["nonce"]] == 1
    assert receipts_of(stack, device["pid"]) == 2  # the message and the marker
    listed = stack.get("/api/incidents", admin.token, limit=500)["items"]
    mine = [i for i in listed if i["id"] == again.json()["incident_id"]]
    assert len(mine) == 1 and mine[0]["status"] == "open"
    assert admin.rejected("replayed_nonce") == replays_before, "an identical message is a duplicate, not a replay"


def test_sos_published_while_the_ingest_is_stopped_are_all_stored_once_after_start(
    running: Server, admin: Admin
) -> None:
    stack = running.stack
    device = stack.create_device(unique_pid("restart"), unique_region())
    assert running.proc is not None, "the server must have run once so the broker holds its session"

    running.stop()
    payloads = [sos(device, nonce=f"r-{i}-{uuid.uuid4().hex[:8]}") for i in range(50)]
    with publisher(*stack.mqtt_address) as client:
        for payload in payloads:
            publish(client, f"panic/ingest/{device['pid']}", payload)  # PUBACK from the broker: it holds them
    assert incidents_of(stack, device["pid"]) == 0, "nothing can be stored while the ingest is down"

    running.start()
    _assert_each_exactly_once(running, device, [p["nonce"] for p in payloads])


def test_sigkill_while_500_sos_stream_in_loses_and_doubles_none(running: Server, admin: Admin) -> None:
    stack = running.stack
    assert stack.database_url is not None and running.proc is not None
    device = stack.create_device(unique_pid("crash"), unique_region())
    pid, victim = device["pid"], running.proc.pid
    payloads = [sos(device, nonce=f"c-{i}-{uuid.uuid4().hex[:8]}") for i in range(500)]
    stream = CrashingStream(
        *stack.mqtt_address,
        topic=f"panic/ingest/{pid}",
        bodies=payloads,
        database_url=stack.database_url,
        pid=pid,
        trigger_at=100,
        on_trigger=lambda: os.kill(victim, signal.SIGKILL),  # no shutdown, no DISCONNECT, in-flight cut off
    )

    stream.start()
    assert stream.triggered.wait(timeout=120), "the stream never reached the trigger"
    running.kill()  # reap the dead server (a second SIGKILL is harmless)
    assert stream.published_at_trigger is not None, f"no SIGKILL was sent: {stream.error!r}"
    stored_after_kill = incidents_of(stack, pid)
    print(f"SIGKILL with {stream.published_at_trigger} published and {stream.stored_at_trigger} stored; "
          f"{stored_after_kill} stored when it died")
    assert stream.stored_at_trigger is not None and stream.stored_at_trigger < stream.published_at_trigger
    assert stream.published_at_trigger < len(payloads), "the kill must land while messages are still streaming in"

    running.start()
    stream.join()
    assert stream.published == len(payloads)
    _assert_each_exactly_once(running, device, [p["nonce"] for p in payloads])
