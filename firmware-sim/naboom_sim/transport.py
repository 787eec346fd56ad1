"""Broker URLs (``mqtt``, ``mqtts``, ``ws``, ``wss``) turned into MQTT clients with the device's identity.

The client id of a device is always its pid: the production broker binds device client ids to
their usernames and refuses any other id, and a fixed id is what keeps a persistent session.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}
# The production site serves MQTT over WebSockets at /mqtt (through nginx).
DEFAULT_WS_PATH = "/mqtt"


class BrokerUrlError(ValueError):
    """The broker URL cannot be used (unknown scheme, no host, bad port)."""


@dataclass(frozen=True)
class Broker:
    """Where the broker is and how to reach it; ``ca``/``insecure`` only matter with TLS."""

    scheme: str
    host: str
    port: int
    path: str | None = None
    ca: Path | None = None
    insecure: bool = False

    @property
    def tls(self) -> bool:
        return self.scheme in ("mqtts", "wss")

    @property
    def transport(self) -> Literal["tcp", "websockets"]:
        return "websockets" if self.scheme in ("ws", "wss") else "tcp"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context: system roots, or ``ca`` alone; ``insecure`` skips verification (lab use only)."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path or ''}"


def parse_broker_url(url: str, ca: Path | None = None, insecure: bool = False) -> Broker:
    """``mqtt://host[:port]``, ``mqtts://…``, ``ws://host[:port][/path]`` or ``wss://…`` (path default ``/mqtt``)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BrokerUrlError(f"bad broker URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise BrokerUrlError(f"bad broker URL {url!r}: the scheme must be one of mqtt, mqtts, ws, wss")
    if not parts.hostname:
        raise BrokerUrlError(f"bad broker URL {url!r}: no host")
    path = None
    if scheme in ("ws", "wss"):
        path = parts.path or DEFAULT_WS_PATH
    elif parts.path not in ("", "/"):
        raise BrokerUrlError(f"bad broker URL {url!r}: a path only makes sense with ws:// or wss://")
    if ca is not None and not ca.is_file():
        raise BrokerUrlError(f"the CA file {ca} does not exist")
    return Broker(scheme, parts.hostname, port or DEFAULT_PORTS[scheme], path, ca, insecure)


def device_client(
    broker: Broker,
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    *,
    clean_session: bool = False,
    timeout: float = 10.0,
) -> aiomqtt.Client:
    """An aiomqtt client (MQTT 3.1.1) with a fixed id; a persistent session unless ``clean_session``."""
    return aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=client_id,
        username=username,
        password=password,
        protocol=aiomqtt.ProtocolVersion.V311,
        clean_session=clean_session,
        transport=broker.transport,
        websocket_path=broker.path,
        tls_context=broker.ssl_context(),
        tls_insecure=broker.insecure if broker.tls else None,
        timeout=timeout,
    )


def paho_client(
    broker: Broker,
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    inflight: int = 1000,
) -> paho.Client:
    """A plain paho client for bulk publishing: clean session, a large in-flight window, no queue limit."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True,
        protocol=paho.MQTTv311,
        transport=broker.transport,
    )
    if broker.path:
        client.ws_set_options(path=broker.path)
    context = broker.ssl_context()
    if context is not None:
        client.tls_set_context(context)
        if broker.insecure:
            client.tls_insecure_set(True)
    if username is not None:
        client.username_pw_set(username, password)
    client.max_inflight_messages_set(inflight)
    client.max_queued_messages_set(0)
    return client
