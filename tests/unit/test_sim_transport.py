"""Broker URLs: schemes, default ports, WebSocket paths and TLS settings."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from naboom_sim.transport import BrokerUrlError, parse_broker_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1884", ("127.0.0.1", 1884, "tcp", None, False)),
        ("mqtt://broker", ("broker", 1883, "tcp", None, False)),
        ("mqtts://broker", ("broker", 8883, "tcp", None, True)),
        ("ws://host:8084/", ("host", 8084, "websockets", "/", False)),
        ("ws://host:8084", ("host", 8084, "websockets", "/mqtt", False)),
        ("wss://naboom.example/mqtt", ("naboom.example", 443, "websockets", "/mqtt", True)),
    ],
)
def test_broker_urls_are_understood(url: str, expected: tuple) -> None:
    b = parse_broker_url(url)
    assert (b.host, b.port, b.transport, b.path, b.tls) == expected


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://host:1883", "scheme must be one of"),
        ("mqtt://:1883", "no host"),
        ("mqtt://host:99999", "bad broker URL"),
        ("mqtt://host:1883/mqtt", "a path only makes sense"),
    ],
)
def test_bad_broker_urls_are_refused_clearly(url: str, error: str) -> None:
    with pytest.raises(BrokerUrlError, match=error):
        parse_broker_url(url)


def test_tls_is_verified_unless_insecure(tmp_path: Path) -> None:
    assert parse_broker_url("mqtt://host").ssl_context() is None
    verified = parse_broker_url("wss://host/mqtt").ssl_context()
    assert verified is not None and verified.verify_mode == ssl.CERT_REQUIRED and verified.check_hostname
    lab = parse_broker_url("mqtts://host", insecure=True).ssl_context()
    assert lab is not None and lab.verify_mode == ssl.CERT_NONE
    with pytest.raises(BrokerUrlError, match="CA file"):
        parse_broker_url("mqtts://host", ca=tmp_path / "missing.pem")
