"""Helpers for the outbox tests: a subscriber that records what the bridge publishes, a broker of our own."""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.support import Stack, free_port, psql, wait_for_sync


class Subscriber:
    """A persistent-session QoS 1 subscriber; ``messages`` are ``(topic, payload)`` in arrival order."""

    def __init__(self, host: str, port: int, *topics: str) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._topics = topics
        # A fixed id and a persistent session: what is published while we reconnect is kept for us.
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-sub-{uuid.uuid4().hex[:8]}", clean_session=False
        )
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        wait_for_sync(self._subscribed.is_set, timeout=20, what="the test subscriber to subscribe")

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        client.subscribe([(topic, 1) for topic in self._topics])

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, json.loads(message.payload)))

    def on(self, topic: str) -> list[dict[str, Any]]:
        """Payloads received on ``topic``, in order."""
        with self._lock:
            return [payload for t, payload in self.messages if t == topic]

    def at_least(self, topic: str, count: int) -> list[dict[str, Any]] | None:
        """The payloads on ``topic`` once there are ``count`` of them (for :func:`wait_for_sync`)."""
        payloads = self.on(topic)
        return payloads if len(payloads) >= count else None

    def all(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@contextmanager
def subscriber(host: str, port: int, *topics: str) -> Iterator[Subscriber]:
    sub = Subscriber(host, port, *topics)
    try:
        yield sub
    finally:
        sub.close()


class Mosquitto:
    """A Mosquitto of the test's own, stopped and started again on the same port and persistence file."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nuser root\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        log = (self.workdir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        wait_for_sync(self._listening, timeout=20, what=f"mosquitto on port {self.port}")

    def _listening(self) -> bool:
        probe = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:8]}")
        try:
            probe.connect("127.0.0.1", self.port)
        except OSError:
            return False
        probe.disconnect()
        return True

    def stop(self) -> None:
        """SIGTERM: the broker saves its sessions (the subscriber's queue) and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None


def health(stack: Stack) -> tuple[int, dict[str, Any]]:
    r = httpx.get(f"{stack.base_url}/monitoring/health/", timeout=10)
    return r.status_code, r.json()


def bridge_status(stack: Stack) -> dict[str, Any]:
    """The bridge part of the health answer."""
    return dict(health(stack)[1]["parts"]["bridge"])


def outbox_rows(stack: Stack, where: str = "true") -> list[tuple[str, dict[str, Any], bool]]:
    """``(topic, payload, published)`` of outbox rows in id order."""
    assert stack.database_url is not None
    out = psql(
        stack.database_url,
        "SELECT coalesce(json_agg(json_build_array(topic, payload, published_at IS NOT NULL) ORDER BY id), '[]') "
        f"FROM outbox_message WHERE {where}",
    )
    return [(t, p, bool(done)) for t, p, done in json.loads(out)]


def bridge_backends(stack: Stack) -> list[int]:
    """Server pids of the bridges' lock-holding connections to this stack's database."""
    assert stack.database_url is not None
    out = psql(
        stack.database_url,
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'naboom-bridge' AND datname = current_database()",
    )
    return [int(line) for line in out.split() if line]
