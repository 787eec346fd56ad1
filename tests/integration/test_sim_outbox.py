"""``naboom-sim sos`` against a real Mosquitto and ``naboom serve``: the offline outbox and ack-driven retries.

SOS raised while the broker is down wait in the outbox and are delivered, once each, with their
original ``ts`` and nonce once it is back; an SOS published while the app is down is published
again until the app, back up, acknowledges it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.incident_helpers import call, ok
from tests.integration.outbox_helpers import Mosquitto
from tests.support import Server, Stack, fresh_stack, serving, wait_for_sync

SIM = str(Path(sys.executable).parent / "naboom-sim")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A Mosquitto of this module's own, which the tests stop and start again."""
    with Mosquitto(tmp_path_factory.mktemp("mosquitto")) as mosquitto:
        yield mosquitto


@pytest.fixture(scope="module")
def stack(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with fresh_stack(tmp_path_factory, f"mqtt://127.0.0.1:{broker.port}") as stack:
        yield stack


@pytest.fixture(scope="module")
def served(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(stack, tmp_path_factory) as srv:
        yield srv


def _device(stack: Stack, tmp_path: Path) -> tuple[str, Path, str]:
    """A new region with one device (credentials written to a file) and an operator: ``(pid, file, token)``."""
    _, device, token = stack.new_region()
    path = tmp_path / f"{device['pid']}.json"
    path.write_text(json.dumps(device))
    return device["pid"], path, token


def _sim(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SIM, *args], capture_output=True, text=True, timeout=timeout)


def _pending(credentials: Path, outbox: Path) -> list[dict[str, Any]]:
    out = _sim("outbox", "list", "--credentials", str(credentials), "--outbox", str(outbox), "--json")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def _unix(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def _incidents(stack: Stack, token: str) -> list[dict[str, Any]]:
    page = ok(call(stack, token, "GET", "/api/incidents", limit=100))
    return list(page["items"])


def _nonce_of(stack: Stack, token: str, incident_id: str) -> Any:
    detail = ok(call(stack, token, "GET", f"/api/incidents/{incident_id}"))
    (sos,) = [event for event in detail["timeline"] if event["type"] == "sos"]
    return sos["payload"]["nonce"]


def test_sos_raised_with_the_broker_down_are_delivered_once_each_with_their_original_ts(
    broker: Mosquitto, served: Server, tmp_path: Path
) -> None:
    stack = served.stack
    pid, credentials, token = _device(stack, tmp_path)
    outbox = tmp_path / "outbox"
    url = f"mqtt://127.0.0.1:{broker.port}"

    broker.stop()
    try:
        for i in range(3):
            raised = _sim(
                "sos", "--credentials", str(credentials), "--broker", url, "--outbox", str(outbox),
                "--msg", f"offline {i}", "--lat", "-24.53", "--lng", "28.71", "--give-up-after", "1",
            )
            assert raised.returncode == 3, raised.stderr
            assert "still queued" in raised.stderr
        queued = _pending(credentials, outbox)
        assert [e["msg"] for e in queued] == ["offline 0", "offline 1", "offline 2"]
    finally:
        broker.start()

    flushed = _sim(
        "outbox", "flush", "--credentials", str(credentials), "--broker", url, "--outbox", str(outbox),
        "--ack-timeout", "3", "--give-up-after", "90", "--json",
    )
    assert flushed.returncode == 0, flushed.stderr
    delivered = [json.loads(line) for line in flushed.stdout.splitlines()]
    # Oldest first, each with the ts and nonce it was raised with.
    assert [(d["nonce"], d["ts"]) for d in delivered] == [(e["nonce"], e["ts"]) for e in queued]
    assert all(d["pid"] == pid and d["attempts"] >= 1 for d in delivered)
    assert _pending(credentials, outbox) == []

    incidents = _incidents(stack, token)
    assert len(incidents) == 3
    assert {i["id"] for i in incidents} == {d["incident_id"] for d in delivered}
    original_ts = {e["nonce"]: e["ts"] for e in queued}
    for incident in incidents:
        nonce = _nonce_of(stack, token, incident["id"])
        assert incident["device"] == pid
        assert _unix(incident["ts"]) == original_ts[nonce]
        assert incident["sos_count"] == 1


def test_an_sos_published_while_the_app_is_down_is_retried_until_the_ack_arrives(
    broker: Mosquitto, served: Server, tmp_path: Path
) -> None:
    stack = served.stack
    pid, credentials, token = _device(stack, tmp_path)
    outbox = tmp_path / "outbox"
    log = tmp_path / "sim.log"

    served.stop()  # the ingest's persistent session stays on the broker and queues what devices publish
    try:
        with log.open("w") as err:
            sim = subprocess.Popen(
                [
                    SIM, "sos", "--credentials", str(credentials), "--broker", f"mqtt://127.0.0.1:{broker.port}",
                    "--outbox", str(outbox), "--msg", "while the app is down", "--ack-timeout", "1",
                    "--give-up-after", "120", "--json",
                ],
                stdout=subprocess.PIPE, stderr=err, text=True,
            )
            # Published and not acknowledged: the simulator says it will publish again.
            wait_for_sync(lambda: f"{pid}: no ack for nonce" in log.read_text(), timeout=30, what="an unacked publish")
            assert sim.poll() is None
            (entry,) = _pending(credentials, outbox)
    finally:
        served.start()

    stdout, _ = sim.communicate(timeout=120)
    assert sim.returncode == 0, log.read_text()
    (delivered,) = [json.loads(line) for line in stdout.splitlines()]
    assert (delivered["nonce"], delivered["ts"]) == (entry["nonce"], entry["ts"])
    assert _pending(credentials, outbox) == []
    (incident,) = _incidents(stack, token)
    assert incident["id"] == delivered["incident_id"]
    assert _unix(incident["ts"]) == entry["ts"]
    assert _nonce_of(stack, token, incident["id"]) == entry["nonce"]
