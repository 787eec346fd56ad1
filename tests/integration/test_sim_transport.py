"""``naboom-sim sos`` over MQTT over WebSockets with TLS (a self-signed CA) and a broker login.

The broker here has two listeners: plain TCP for the app, and WSS with passwords for devices —
the shape of the production edge, without nginx (the e2e test covers nginx's ``/mqtt``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.integration.incident_helpers import call, ok
from tests.support import Server, Stack, free_port, fresh_stack, serving, wait_for_sync

SIM = str(Path(sys.executable).parent / "naboom-sim")


@dataclass
class TlsBroker:
    tcp_port: int
    wss_port: int
    ca: Path
    passwords: Path
    proc: subprocess.Popen[bytes]

    def add_user(self, name: str, password: str) -> None:
        subprocess.run(["mosquitto_passwd", "-b", str(self.passwords), name, password], check=True)
        self.proc.send_signal(signal.SIGHUP)  # Mosquitto reloads its password file

    def accepts(self, name: str, password: str) -> bool:
        """Whether the WSS listener lets ``name`` in (the reload is asynchronous)."""
        probe = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{name}", transport="websockets")
        probe.ws_set_options(path="/mqtt")
        probe.tls_set(ca_certs=str(self.ca))
        probe.username_pw_set(name, password)
        connected: list[bool] = []
        answered = threading.Event()

        def on_connect(_c: paho.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
            connected.append(not reason.is_failure)
            answered.set()

        probe.on_connect = on_connect
        try:
            probe.connect("127.0.0.1", self.wss_port)
        except OSError:
            return False
        probe.loop_start()
        try:
            answered.wait(10)
        finally:
            probe.disconnect()
            probe.loop_stop()
        return connected == [True]


def _listening(port: int) -> bool:
    probe = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{port}")
    try:
        probe.connect("127.0.0.1", port)
    except OSError:
        return False
    probe.disconnect()
    return True


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    work = tmp_path_factory.mktemp("tls-broker")
    cert, key, passwords = work / "cert.pem", work / "key.pem", work / "passwords"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", str(key),
            "-out", str(cert), "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True, capture_output=True,
    )
    passwords.touch()
    tcp_port, wss_port = free_port(), free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(
        "per_listener_settings true\nuser root\npersistence false\n"
        f"listener {tcp_port} 127.0.0.1\nallow_anonymous true\n"
        f"listener {wss_port} 127.0.0.1\nprotocol websockets\ncertfile {cert}\nkeyfile {key}\n"
        f"allow_anonymous false\npassword_file {passwords}\n"
    )
    log = (work / "mosquitto.log").open("ab")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    wait_for_sync(lambda: _listening(tcp_port), what="mosquitto's TCP listener")
    yield TlsBroker(tcp_port, wss_port, cert, passwords, proc)
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def served(tls_broker: TlsBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with fresh_stack(tmp_path_factory, f"mqtt://127.0.0.1:{tls_broker.tcp_port}") as stack, \
            serving(stack, tmp_path_factory) as srv:
        yield srv


def _sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SIM, *args], capture_output=True, text=True, timeout=120)


def _device_with_login(stack: Stack, broker: TlsBroker, tmp_path: Path) -> tuple[dict[str, str], Path, str]:
    _, device, token = stack.new_region()
    device = {**device, "mqtt_username": device["pid"], "mqtt_password": "pw-" + device["pid"]}
    broker.add_user(device["pid"], device["mqtt_password"])
    wait_for_sync(lambda: broker.accepts(device["pid"], device["mqtt_password"]), what="the reloaded password file")
    path = tmp_path / "device.json"
    path.write_text(json.dumps(device))
    return device, path, token


def _pending(credentials: Path, outbox: Path) -> int:
    out = _sim("outbox", "list", "--credentials", str(credentials), "--outbox", str(outbox), "--json")
    return len(out.stdout.splitlines())


def test_an_sos_over_wss_with_a_custom_ca_and_the_devices_login_becomes_an_incident(
    tls_broker: TlsBroker, served: Server, tmp_path: Path
) -> None:
    device, credentials, token = _device_with_login(served.stack, tls_broker, tmp_path)
    url = f"wss://127.0.0.1:{tls_broker.wss_port}/mqtt"
    outbox = tmp_path / "outbox"

    def sos(*extra: str) -> subprocess.CompletedProcess[str]:
        return _sim("sos", "--credentials", str(credentials), "--broker", url, "--outbox", str(outbox),
                    "--msg", "over wss", "--json", *extra)

    sent = sos("--ca", str(tls_broker.ca), "--give-up-after", "60")
    assert sent.returncode == 0, sent.stderr
    delivered = json.loads(sent.stdout)
    incident = ok(call(served.stack, token, "GET", f"/api/incidents/{delivered['incident_id']}"))
    assert (incident["device"], incident["msg"]) == (device["pid"], "over wss")
    assert _pending(credentials, outbox) == 0


def test_an_untrusted_certificate_keeps_the_sos_queued_and_insecure_mode_delivers_it(
    tls_broker: TlsBroker, served: Server, tmp_path: Path
) -> None:
    _, credentials, _ = _device_with_login(served.stack, tls_broker, tmp_path)
    url = f"wss://127.0.0.1:{tls_broker.wss_port}/mqtt"
    outbox = tmp_path / "outbox"
    untrusted = _sim("sos", "--credentials", str(credentials), "--broker", url, "--outbox", str(outbox),
                     "--give-up-after", "2")
    assert untrusted.returncode == 3, untrusted.stderr
    assert _pending(credentials, outbox) == 1
    lab = _sim("outbox", "flush", "--credentials", str(credentials), "--broker", url, "--outbox", str(outbox),
               "--insecure", "--give-up-after", "60")
    assert lab.returncode == 0, lab.stderr
    assert _pending(credentials, outbox) == 0


def test_a_refused_login_is_a_credential_error_and_the_sos_stays_queued(
    tls_broker: TlsBroker, served: Server, tmp_path: Path
) -> None:
    _, credentials, _ = _device_with_login(served.stack, tls_broker, tmp_path)
    outbox = tmp_path / "outbox"
    refused = _sim("sos", "--credentials", str(credentials), "--broker", f"wss://127.0.0.1:{tls_broker.wss_port}/mqtt",
                   "--ca", str(tls_broker.ca), "--password", "wrong", "--outbox", str(outbox))
    assert refused.returncode == 2, refused.stderr
    assert "refused" in refused.stderr
    assert _pending(credentials, outbox) == 1
