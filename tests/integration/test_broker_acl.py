"""The production Mosquitto (deploy template + Dynamic Security) keeps devices in their own lanes.

Every test runs against a real ``mosquitto -c`` on the rendered production config; device
accounts come from ``naboom device create`` with ``NABOOM_MQTT_ADMIN_URL`` set, as in a
deployment.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest

from naboom.telemetry.service import sign as sign_telemetry
from tests.brokers import MqttProbe, ProductionBroker, production_broker, wait_closed
from tests.support import (
    Server,
    Stack,
    free_port,
    fresh_stack,
    psql,
    serving,
    sos,
    unique_pid,
    unique_region,
    wait_for_sync,
)

NOT_AUTHORIZED = 0x87
SUBACK_FAILURE_V311 = 0x80
SCALE_OUT_COUNT = 30


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionBroker]:
    with production_broker(tmp_path_factory.mktemp("broker")) as started:
        yield started


@pytest.fixture(scope="module")
def stack(broker: ProductionBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """An installation whose app logs in as the app user and whose CLI manages device accounts."""
    extra = {"NABOOM_MQTT_ADMIN_URL": broker.admin_url, "NABOOM_MQTT_SHARE_GROUP": f"g{uuid.uuid4().hex[:6]}"}
    with fresh_stack(tmp_path_factory, broker.app_url, extra) as installed:
        yield installed


@pytest.fixture(scope="module")
def served(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(stack, tmp_path_factory) as srv:
        yield srv


@pytest.fixture
def probes() -> Iterator[list[MqttProbe]]:
    """Probes a test opens; closed after it."""
    opened: list[MqttProbe] = []
    yield opened
    for probe in opened:
        probe.close()


def new_device(stack: Stack, region: str | None = None) -> dict[str, Any]:
    created: dict[str, Any] = json.loads(
        stack.cli("device", "create", unique_pid(), "--region", region or unique_region(), "--broker")
    )
    return created


def forget_session(broker: ProductionBroker, client_id: str) -> None:
    """Remove a stopped server's persistent session, or the share group keeps queueing its part for it."""
    probe = broker.probe(broker.app_user, broker.app_password, client_id, protocol=paho.MQTTv311)
    probe.close()


def connect(broker: ProductionBroker, probes: list[MqttProbe], device: dict[str, Any] | None = None,
            client_id: str | None = None, **options: Any) -> MqttProbe:
    if device is None:
        probe = broker.probe(broker.app_user, broker.app_password, **options)
    else:
        probe = broker.probe(device["mqtt_username"], device["mqtt_password"], client_id or device["pid"], **options)
    probes.append(probe)
    return probe


def test_anonymous_connect_is_refused_on_both_listeners(broker: ProductionBroker, probes: list[MqttProbe]) -> None:
    tcp = broker.probe(None, None)
    ws = MqttProbe.connect("127.0.0.1", broker.ws_port, None, None, transport="websockets")
    probes += [tcp, ws]
    assert tcp.connack is not None and tcp.connack.value == NOT_AUTHORIZED
    assert ws.connack is not None and ws.connack.value == NOT_AUTHORIZED


def test_device_create_prints_broker_credentials_bound_to_the_pid(stack: Stack, broker: ProductionBroker) -> None:
    device = new_device(stack)
    assert set(device) == {"pid", "kid", "secret", "mqtt_username", "mqtt_password"}
    assert device["mqtt_username"] == device["pid"] and len(device["mqtt_password"]) >= 40
    # The broker saved the account (username = client id = pid) with a hash, never the password.
    saved = next(c for c in json.loads(broker.dynsec_path.read_text())["clients"] if c["username"] == device["pid"])
    assert saved["clientid"] == device["pid"] and device["mqtt_password"] not in broker.dynsec_path.read_text()


def test_a_device_publishes_to_its_own_topic_but_not_to_another_devices(
    stack: Stack, broker: ProductionBroker, probes: list[MqttProbe]
) -> None:
    mine, other = new_device(stack), new_device(stack)
    app = connect(broker, probes)
    assert not app.subscribe("panic/ingest/#").is_failure
    device = connect(broker, probes, mine)
    assert device.accepted

    assert not device.publish(f"panic/ingest/{mine['pid']}", "first").is_failure
    app.wait_message(lambda topic, body: body == b"first")

    refused = device.publish(f"panic/ingest/{other['pid']}", "forged")
    assert refused.value == NOT_AUTHORIZED
    # A later legitimate message is the barrier: once it is here, the forged one would have been too.
    assert not device.publish(f"panic/ingest/{mine['pid']}", "barrier").is_failure
    app.wait_message(lambda topic, body: body == b"barrier")
    assert app.received(lambda topic, body: topic == f"panic/ingest/{other['pid']}" or body == b"forged") == []
    # Its own telemetry topic is open to it, another device's is not.
    # (0x10 "no matching subscribers" is a success: nobody listens to telemetry in this test.)
    assert not device.publish(f"device/{mine['pid']}/telemetry", "{}").is_failure
    assert device.publish(f"device/{other['pid']}/telemetry", "{}").value == NOT_AUTHORIZED


def test_a_device_cannot_subscribe_to_everything_or_to_another_devices_acks(
    stack: Stack, broker: ProductionBroker, probes: list[MqttProbe]
) -> None:
    mine, other = new_device(stack), new_device(stack)
    device = connect(broker, probes, mine)
    assert device.subscribe("#").value == NOT_AUTHORIZED
    assert device.subscribe("panic/ingest/+").value == NOT_AUTHORIZED
    assert device.subscribe(f"panic/ack/{other['pid']}").value == NOT_AUTHORIZED
    assert not device.subscribe(f"panic/ack/{mine['pid']}").is_failure
    device.close()

    # MQTT 3.1.1 devices get the old-style failure return code.
    old = connect(broker, probes, mine, protocol=paho.MQTTv311)
    assert old.subscribe("#").value == SUBACK_FAILURE_V311


def test_a_second_connection_with_a_devices_client_id_under_another_username_is_refused(
    stack: Stack, broker: ProductionBroker, probes: list[MqttProbe]
) -> None:
    victim, attacker = new_device(stack), new_device(stack)
    real = connect(broker, probes, victim)
    assert real.accepted

    takeover = connect(broker, probes, attacker, client_id=victim["pid"])
    assert takeover.connack is not None and takeover.connack.value == NOT_AUTHORIZED
    # The real device's session survived: still connected, and its publishes still go through.
    assert real.disconnected is None
    assert not real.publish(f"panic/ingest/{victim['pid']}", "still here").is_failure
    assert real.disconnected is None


def test_disabling_a_broker_account_drops_the_device_and_refuses_its_next_connect(
    stack: Stack, broker: ProductionBroker, probes: list[MqttProbe]
) -> None:
    device = new_device(stack)
    live = connect(broker, probes, device)
    assert live.accepted

    assert json.loads(stack.cli("broker", "disable", device["pid"]))["account"] is True
    wait_closed(live)
    again = connect(broker, probes, device)
    assert again.connack is not None and again.connack.value == NOT_AUTHORIZED

    stack.cli("broker", "enable", device["pid"])
    assert connect(broker, probes, device).accepted


def test_rotate_replaces_the_broker_password(stack: Stack, broker: ProductionBroker, probes: list[MqttProbe]) -> None:
    device = new_device(stack)
    rotated = json.loads(stack.cli("device", "rotate", device["pid"]))
    assert rotated["kid"] == 2 and rotated["mqtt_username"] == device["pid"]
    assert rotated["mqtt_password"] != device["mqtt_password"]
    old = connect(broker, probes, device)
    assert old.connack is not None and old.connack.value == NOT_AUTHORIZED
    assert connect(broker, probes, rotated).accepted


def test_without_the_broker_flag_no_account_is_made(
    stack: Stack, broker: ProductionBroker, probes: list[MqttProbe]
) -> None:
    pid = unique_pid()
    created = json.loads(stack.cli("device", "create", pid, "--region", unique_region(), "--no-broker"))
    assert set(created) == {"pid", "kid", "secret"}
    guess = broker.probe(pid, "", pid)
    probes.append(guess)
    assert guess.connack is not None and guess.connack.is_failure


def test_device_create_with_the_broker_down_saves_nothing(stack: Stack) -> None:
    down = dataclasses.replace(
        stack, extra={**stack.extra, "NABOOM_MQTT_ADMIN_URL": f"mqtt://nobody:x@127.0.0.1:{free_port()}"}
    )
    pid = unique_pid()
    with pytest.raises(AssertionError, match="cannot manage broker accounts"):
        down.cli("device", "create", pid, "--region", unique_region())
    assert psql(stack.database_url or "", f"SELECT count(*) FROM device WHERE pid = '{pid}'") == "0"

    unmanaged = dataclasses.replace(stack, extra={})
    with pytest.raises(AssertionError, match="NABOOM_MQTT_ADMIN_URL"):
        unmanaged.cli("device", "create", pid, "--region", unique_region(), "--broker")


def test_a_device_sos_over_the_production_broker_becomes_an_incident_and_is_acknowledged(
    stack: Stack, broker: ProductionBroker, served: Server, probes: list[MqttProbe]
) -> None:
    region = unique_region()
    device = new_device(stack, region)
    pid = device["pid"]
    button = connect(broker, probes, device)
    assert not button.subscribe(f"panic/ack/{pid}").is_failure

    message = sos(device)
    assert not button.publish(f"panic/ingest/{pid}", json.dumps(message)).is_failure
    _, body = button.wait_message(lambda topic, _: topic == f"panic/ack/{pid}", timeout=30)
    ack = json.loads(body)
    assert ack["status"] == "received" and ack["nonce"] == message["nonce"]
    assert psql(stack.database_url or "", f"SELECT status FROM incident WHERE id = '{ack['incident_id']}'") == "open"

    # Its telemetry reaches the app's (unshared) telemetry subscription too.
    report: dict[str, Any] = {"pid": pid, "ts": int(time.time()), "kid": device["kid"], "battery": 42}
    report["sig"] = sign_telemetry(report, device["secret"])
    assert not button.publish(f"device/{pid}/telemetry", json.dumps(report)).is_failure
    wait_for_sync(lambda: psql(stack.database_url or "", f"SELECT battery FROM device WHERE pid = '{pid}'") == "42",
                  what="the device's telemetry stored")


def test_deactivating_a_device_over_the_api_disables_its_broker_login(
    stack: Stack, broker: ProductionBroker, served: Server, probes: list[MqttProbe]
) -> None:
    device = new_device(stack)
    live = connect(broker, probes, device)
    headers = {"Authorization": f"Bearer {stack.admin()}"}
    r = httpx.post(f"{stack.base_url}/api/devices/{device['pid']}/deactivate", headers=headers)
    assert r.status_code == 200 and r.json()["active"] is False
    wait_closed(live)
    refused = connect(broker, probes, device)
    assert refused.connack is not None and refused.connack.value == NOT_AUTHORIZED

    r = httpx.post(f"{stack.base_url}/api/devices/{device['pid']}/activate", headers=headers)
    assert r.status_code == 200 and r.json()["active"] is True
    assert connect(broker, probes, device).accepted


def test_an_admin_creating_a_device_over_the_api_gets_its_broker_login_once(
    stack: Stack, broker: ProductionBroker, served: Server, probes: list[MqttProbe]
) -> None:
    pid, headers = unique_pid(), {"Authorization": f"Bearer {stack.admin()}"}
    region = unique_region()
    stack.cli("device", "create", unique_pid(), "--region", region, "--no-broker")  # makes the region
    r = httpx.post(f"{stack.base_url}/api/devices", headers=headers, json={"pid": pid, "region": region})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["mqtt_username"] == pid and len(created["mqtt_password"]) >= 40
    assert connect(broker, probes, created).accepted
    # Shown only at creation: reading the device back never carries the password.
    detail = httpx.get(f"{stack.base_url}/api/devices/{pid}", headers=headers)
    assert created["mqtt_password"] not in detail.text


def test_a_broker_that_cannot_be_reached_answers_503_and_leaves_the_device_as_it_was(
    stack: Stack, broker: ProductionBroker, served: Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    device = new_device(stack)
    unreachable = dataclasses.replace(
        stack, http_port=free_port(), client_id=f"naboom-test-{uuid.uuid4().hex[:8]}",
        extra={**stack.extra, "NABOOM_MQTT_ADMIN_URL": f"mqtt://nobody:x@127.0.0.1:{free_port()}"},
    )
    other = Server(unreachable, tmp_path_factory.mktemp("logs") / "unreachable.log")
    other.start()
    try:
        headers = {"Authorization": f"Bearer {stack.admin()}"}
        r = httpx.post(f"{unreachable.base_url}/api/devices/{device['pid']}/deactivate", headers=headers)
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "broker" in r.json()["detail"] and "x@" not in r.text
        assert stack.get(f"/api/devices/{device['pid']}", stack.admin())["active"] is True

        # Creating a device needs its broker login too: with the broker away nothing is saved.
        pid = unique_pid()
        r = httpx.post(f"{unreachable.base_url}/api/devices", headers=headers,
                       json={"pid": pid, "region": stack.get(f"/api/devices/{device['pid']}", stack.admin())["region"]})
        assert r.status_code == 503, r.text
        assert httpx.get(f"{stack.base_url}/api/devices/{pid}", headers=headers).status_code == 404
    finally:
        other.stop()
        forget_session(broker, unreachable.client_id)


def test_two_servers_share_the_ingest_on_the_production_broker(
    stack: Stack, broker: ProductionBroker, served: Server, probes: list[MqttProbe],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    second = Server(
        dataclasses.replace(stack, http_port=free_port(), client_id=f"naboom-test-{uuid.uuid4().hex[:8]}"),
        tmp_path_factory.mktemp("logs") / "second.log",
    )
    second.start()
    try:
        device = new_device(stack)
        button = connect(broker, probes, device)
        for _ in range(SCALE_OUT_COUNT):
            assert not button.publish(f"panic/ingest/{device['pid']}", json.dumps(sos(device))).is_failure
        query = f"SELECT count(*) FROM incident WHERE device_pid = '{device['pid']}'"
        wait_for_sync(lambda: psql(stack.database_url or "", query) == str(SCALE_OUT_COUNT), timeout=30,
                      what=f"{SCALE_OUT_COUNT} incidents")
        admin = stack.admin()
        accepted = [srv.stack.get("/api/ingest/stats", admin)["accepted"] for srv in (served, second)]
        assert all(n > 0 for n in accepted), accepted
        for log in (served.log(), second.log()):
            assert "not authori" not in log.lower()
    finally:
        second.stop()
        forget_session(broker, second.stack.client_id)
