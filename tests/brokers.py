"""A production Mosquitto for tests: the deploy template, Dynamic Security accounts, free ports.

``production_broker(tmp_path)`` renders ``deploy/mosquitto/mosquitto.conf.template``, writes the
first account file with ``naboom broker init`` and runs ``mosquitto -c`` as a child process;
:class:`MqttProbe` is a paho client that records what the broker answered (CONNACK, SUBACK,
PUBACK reason codes and messages), for asserting on ACLs.
"""

from __future__ import annotations

import getpass
import glob
import secrets
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from naboom.deploy.render import render_template
from tests.support import NABOOM, ROOT, free_port, wait_for_sync

TEMPLATE = ROOT / "deploy" / "mosquitto" / "mosquitto.conf.template"
ADMIN_USER = "naboom-admin"
APP_USER = "naboom-app"
# Debian's package and the eclipse-mosquitto image put the plugin in different places.
PLUGIN_GLOBS = ("/usr/lib/*/mosquitto_dynamic_security.so", "/usr/lib/mosquitto_dynamic_security.so",
                "/usr/local/lib/mosquitto_dynamic_security.so", "/usr/local/lib/*/mosquitto_dynamic_security.so")


def dynsec_plugin() -> str:
    """Where this machine's Mosquitto keeps its Dynamic Security plugin."""
    for pattern in PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise AssertionError("mosquitto_dynamic_security.so not found (apt-get install mosquitto)")


@dataclass
class ProductionBroker:
    """One Mosquitto on the production config; ``stop()``/``start()`` keep its data and ports."""

    directory: Path
    tcp_port: int = field(default_factory=free_port)
    ws_port: int = field(default_factory=free_port)
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    app_password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    admin_user: str = ADMIN_USER
    app_user: str = APP_USER
    proc: subprocess.Popen[bytes] | None = None

    @property
    def conf_path(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def dynsec_path(self) -> Path:
        return self.directory / "dynamic-security.json"

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def app_url(self) -> str:
        return f"mqtt://{self.app_user}:{self.app_password}@127.0.0.1:{self.tcp_port}"

    @property
    def admin_url(self) -> str:
        return f"mqtt://{self.admin_user}:{self.admin_password}@127.0.0.1:{self.tcp_port}"

    def values(self) -> dict[str, str]:
        """What the template's placeholders become here."""
        return {
            "MQTT_BIND": "127.0.0.1",
            "MQTT_PORT": str(self.tcp_port),
            "MQTT_WS_BIND": "127.0.0.1",
            "MQTT_WS_PORT": str(self.ws_port),
            "DATA_DIR": f"{self.directory / 'data'}/",
            "DYNSEC_PLUGIN": dynsec_plugin(),
            "DYNSEC_FILE": str(self.dynsec_path),
            # As root, stay root (the files are ours); as anyone else the setting is ignored.
            "RUN_AS_USER": getpass.getuser(),
        }

    def prepare(self) -> None:
        """Render the config and write the first account file with ``naboom broker init``."""
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(render_template(TEMPLATE.read_text(), self.values()))
        env = {"NABOOM_MQTT_ADMIN_PASSWORD": self.admin_password, "NABOOM_MQTT_APP_PASSWORD": self.app_password,
               "PATH": "/usr/bin:/bin"}
        out = subprocess.run(
            [NABOOM, "broker", "init", "--config", str(self.dynsec_path),
             "--admin-user", self.admin_user, "--app-user", self.app_user],
            env=env, capture_output=True, text=True, timeout=60,
        )
        if out.returncode != 0:
            raise AssertionError(f"naboom broker init failed: {out.stderr}")

    def start(self) -> None:
        """Run ``mosquitto -c`` and wait until it listens with its accounts loaded."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf_path)], stdout=log, stderr=subprocess.STDOUT)

        def running() -> bool:
            assert self.proc is not None
            text = self.log_path.read_text(errors="replace")[offset:]
            if "Error" in text or self.proc.poll() is not None:
                raise AssertionError(f"mosquitto failed to start:\n{text}")
            return " running" in text

        wait_for_sync(running, timeout=20, what="mosquitto to start")

    def stop(self) -> None:
        """Stop the broker (SIGTERM: it saves its persistence file) and wait for it to exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def probe(self, username: str | None, password: str | None, client_id: str | None = None,
              **options: Any) -> MqttProbe:
        """A connected (or refused) MQTT v5 client on the TCP listener."""
        return MqttProbe.connect("127.0.0.1", self.tcp_port, username, password, client_id, **options)


@contextmanager
def production_broker(tmp_path: Path) -> Iterator[ProductionBroker]:
    """A started production Mosquitto under ``tmp_path/mosquitto``; stopped and removed after."""
    directory = tmp_path / f"mosquitto-{uuid.uuid4().hex[:6]}"
    directory.mkdir(parents=True)
    broker = ProductionBroker(directory)
    broker.prepare()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class PlainBroker:
    """A Mosquitto like the machine's (anonymous, on loopback, default limits) but in memory, on a
    free port: one per pytest-xdist worker, so that tests running side by side share no broker."""

    directory: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Run it and wait until it listens."""
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        f"log_dest stderr\nuser {getpass.getuser()}\n")
        log_path = self.directory / "mosquitto.log"
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited: {log_path.read_text(errors='replace')}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for_sync(listening, timeout=20, what=f"mosquitto on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None


class MqttProbe:
    """A paho client (MQTT v5 by default) that records every answer the broker gives it."""

    def __init__(self, client: paho.Client) -> None:
        self.client = client
        self.lock = threading.Lock()
        self.connack: ReasonCode | None = None
        self.disconnected: ReasonCode | None = None
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.pubacks: dict[int, ReasonCode] = {}
        self.messages: list[tuple[str, bytes]] = []

    @classmethod
    def connect(cls, host: str, port: int, username: str | None, password: str | None,
                client_id: str | None = None, *, protocol: int = paho.MQTTv5, transport: str = "tcp",
                wait: bool = True, **tls: Any) -> MqttProbe:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"probe-{uuid.uuid4().hex[:8]}",
                             protocol=protocol, transport=transport)  # type: ignore[arg-type]
        if username is not None:
            client.username_pw_set(username, password)
        if tls:
            client.tls_set(**tls)
        probe = cls(client)
        client.on_connect = probe._on_connect
        client.on_disconnect = probe._on_disconnect
        client.on_subscribe = probe._on_subscribe
        client.on_publish = probe._on_publish
        client.on_message = probe._on_message
        client.reconnect_delay_set(1, 1)
        client.connect(host, port, keepalive=30)
        client.loop_start()
        if wait:
            wait_for_sync(lambda: probe.connack is not None, timeout=10, what="CONNACK")
        return probe

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, topic: str, qos: int = 1) -> ReasonCode:
        """SUBSCRIBE and return the SUBACK's reason code."""
        _, mid = self.client.subscribe(topic, qos)
        assert mid is not None, f"SUBSCRIBE {topic} was not sent"
        return wait_for_sync(lambda: self.subacks.get(mid), timeout=10, what=f"SUBACK for {topic}")[0]

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> ReasonCode:
        """PUBLISH at QoS 1 and return the PUBACK's reason code."""
        info = self.client.publish(topic, payload, qos)
        return wait_for_sync(lambda: self.pubacks.get(info.mid), timeout=10, what=f"PUBACK for {topic}")

    def received(self, match: Callable[[str, bytes], bool]) -> list[tuple[str, bytes]]:
        with self.lock:
            return [m for m in self.messages if match(*m)]

    def wait_message(self, match: Callable[[str, bytes], bool], timeout: float = 20) -> tuple[str, bytes]:
        return wait_for_sync(lambda: next(iter(self.received(match)), None), timeout=timeout, what="a message")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self.connack = rc
        if rc.is_failure:
            # Refused for good: no reconnect loop hammering the broker.
            client.disconnect()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self.disconnected = rc

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any) -> None:
        self.subacks[mid] = rcs

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        self.pubacks[mid] = rc

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload)))


def wait_closed(probe: MqttProbe, timeout: float = 10) -> None:
    """Until the broker has dropped ``probe``'s connection."""
    wait_for_sync(lambda: probe.disconnected is not None, timeout=timeout, what="the connection to drop")


__all__ = ["MqttProbe", "PlainBroker", "ProductionBroker", "dynsec_plugin", "production_broker", "wait_closed"]
