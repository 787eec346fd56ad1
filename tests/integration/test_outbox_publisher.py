"""The outbox bridge's MQTT publisher against real Mosquitto brokers of the test's own.

A whole batch goes out at once, in order; each message counts as published only once its
PUBACK is in: a broker that stops answering leaves the batch unconfirmed when the wait runs
out, and a broker that goes away ends the wait at once. It logs in with the URL's user name and
password, speaks TLS for ``mqtts://``, and keeps an idle connection alive with PINGREQs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from naboom.outbox.publisher import Publisher
from naboom.settings import MqttTarget
from tests.integration.outbox_helpers import Mosquitto
from tests.support import free_port, wait_for, wait_for_sync

# Below Mosquitto's default queue per subscriber (1,000).
COUNT = 900


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path) as mosquitto:
        yield mosquitto


@dataclass
class SecureBroker:
    """A Mosquitto with a password listener and a TLS listener (a self-signed certificate)."""

    login_port: int
    tls_port: int
    cert: Path
    log: Path


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    work = tmp_path_factory.mktemp("secure-broker")
    cert, key, passwords, log = work / "cert.pem", work / "key.pem", work / "passwords", work / "mosquitto.log"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", str(key),
            "-out", str(cert), "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True, capture_output=True,
    )
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "bridge", "s3cret-pw"], check=True)
    login_port, tls_port = free_port(), free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(
        "per_listener_settings true\nuser root\npersistence false\nlog_type all\n"
        f"listener {login_port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
        f"listener {tls_port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\nallow_anonymous true\n"
    )
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log.open("ab"), stderr=subprocess.STDOUT)
    wait_for_sync(lambda: log.read_text().count("Opening ipv4 listen socket") >= 2, what="mosquitto's two listeners")
    yield SecureBroker(login_port, tls_port, cert, log)
    proc.terminate()
    proc.wait(timeout=30)


def _target(port: int, **login: str) -> MqttTarget:
    return MqttTarget("127.0.0.1", port, **login)  # type: ignore[arg-type]


def _id() -> str:
    return f"pub-{uuid.uuid4().hex[:8]}"


async def test_a_batch_goes_out_in_order_and_every_message_is_confirmed(broker: Mosquitto) -> None:
    topic = f"test/many/{uuid.uuid4().hex[:8]}"
    # Sizes across the remaining length's one-, two- and three-byte encodings.
    bodies = [f'{{"n":{n},"pad":"{"x" * (n * 23 % 20_000)}"}}'.encode() for n in range(COUNT)]
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=_id()) as subscriber:
        await subscriber.subscribe(topic, qos=1)
        async with Publisher(_target(broker.port), _id()) as publisher:
            confirmed = await publisher.publish([(topic, body) for body in bodies], within=30)
            again = await publisher.publish([(topic, b"second batch")], within=30)
            assert not publisher.gone.done()
        received = []
        async with asyncio.timeout(60):
            async for message in subscriber.messages:
                received.append(message.payload)
                assert message.qos == 1
                if len(received) == COUNT + 1:
                    break
    assert confirmed == [True] * COUNT
    assert again == [True]
    assert received == [*bodies, b"second batch"]


async def test_a_broker_that_stops_answering_leaves_the_batch_unconfirmed_and_the_connection_closed(
    broker: Mosquitto,
) -> None:
    assert broker.proc is not None
    async with Publisher(_target(broker.port), _id()) as publisher:
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            confirmed = await publisher.publish([("test/stopped", b"{}")] * 10, within=1.0)
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        # A late PUBACK must never confirm a later message that reuses its id.
        assert publisher.gone.done()
        assert await publisher.publish([("test/after", b"{}")], within=5) == [False]
    assert confirmed == [False] * 10


async def test_a_broker_that_goes_away_ends_the_wait_with_the_rest_unconfirmed(broker: Mosquitto) -> None:
    assert broker.proc is not None
    async with Publisher(_target(broker.port), _id()) as publisher:
        # Frozen, so no PUBACK comes; then killed while the batch waits: the connection drops.
        os.kill(broker.proc.pid, signal.SIGSTOP)
        waiting = asyncio.ensure_future(publisher.publish([("test/killed", b"{}")] * COUNT, within=600))
        broker.proc.kill()
        broker.proc.wait(timeout=30)
        confirmed = await asyncio.wait_for(waiting, timeout=60)
        assert isinstance(publisher.gone.exception(), aiomqtt.MqttError)
    assert confirmed == [False] * COUNT


async def test_no_broker_listening_is_an_mqtt_error_naming_the_address() -> None:
    port = free_port()
    with pytest.raises(aiomqtt.MqttError, match=f"127.0.0.1:{port}"):
        async with Publisher(_target(port), _id()):
            pass


async def test_it_logs_in_with_the_user_name_and_password_and_a_wrong_password_is_refused(
    secure_broker: SecureBroker,
) -> None:
    async with Publisher(_target(secure_broker.login_port, username="bridge", password="s3cret-pw"), _id()) as publisher:
        assert await publisher.publish([("test/login", b"{}")], within=10) == [True]
    with pytest.raises(aiomqtt.MqttError, match=r"not authorised|bad user name or password"):
        async with Publisher(_target(secure_broker.login_port, username="bridge", password="wrong"), _id()):
            pass


async def test_mqtts_speaks_tls_and_checks_the_brokers_certificate(
    secure_broker: SecureBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = MqttTarget.from_url(f"mqtts://127.0.0.1:{secure_broker.tls_port}")
    # Not trusted: the handshake fails, and that is an MqttError like any other connection failure.
    with pytest.raises(aiomqtt.MqttError, match="certificate verify failed"):
        async with Publisher(target, _id()):
            pass
    monkeypatch.setenv("SSL_CERT_FILE", str(secure_broker.cert))
    async with Publisher(target, _id()) as publisher:
        assert await publisher.publish([("test/tls", b"{}")], within=10) == [True]


async def test_an_idle_connection_is_kept_alive_with_pings(secure_broker: SecureBroker) -> None:
    client_id = _id()
    target = _target(secure_broker.login_port, username="bridge", password="s3cret-pw")
    async with Publisher(target, client_id, keepalive=1) as publisher:
        # Mosquitto drops a client silent for 1.5 keep-alives: two answered pings mean it is alive.
        await wait_for(lambda: secure_broker.log.read_text().count(f"Sending PINGRESP to {client_id}") >= 2,
                       timeout=30, what="two PINGREQs answered")
        assert not publisher.gone.done()
        assert await publisher.publish([("test/idle", b"{}")], within=10) == [True]


async def test_a_broker_that_stops_answering_pings_ends_the_connection(broker: Mosquitto) -> None:
    assert broker.proc is not None
    async with Publisher(_target(broker.port), _id(), keepalive=1) as publisher:
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            await asyncio.wait_for(asyncio.wait({publisher.gone}), timeout=30)
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        error = publisher.gone.exception()
    assert isinstance(error, aiomqtt.MqttError)
    assert "no answer from the broker" in str(error)
