"""The core flow on embedded defaults: SQLite under ``var/``, the embedded amqtt broker, memory channels.

Nothing here touches the machine's PostgreSQL, Redis or Mosquitto: every ``NABOOM_*`` URL is unset.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.integration.live import SseClient, WsClient, open_stream
from tests.support import NABOOM, Server, Stack, free_port, publish, publisher, sos, wait_for

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``naboom serve`` with no database, Redis or MQTT URL: everything embedded."""
    stack = Stack(
        var_dir=tmp_path_factory.mktemp("embedded-var"), database_url=None, redis_url=None, mqtt_url=None
    )
    assert not {"NABOOM_DATABASE_URL", "NABOOM_REDIS_URL", "NABOOM_MQTT_URL"} & stack.env().keys()
    stack.cli("migrate")
    srv = Server(stack, tmp_path_factory.mktemp("embedded-logs") / "serve.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def mqtt(embedded: Server) -> Iterator[paho.Client]:
    """A device-side connection to the embedded broker (QoS 1, waits for each PUBACK)."""
    with publisher(*embedded.stack.mqtt_address) as client:
        yield client


@pytest.fixture(scope="module")
def admin(embedded: Server) -> str:
    """An admin token (the ingest counters are admin-only)."""
    return embedded.stack.admin()


async def test_embedded_mqtt_sos_reaches_sse_and_websocket_and_is_listed_stored_in_sqlite(
    embedded: Server, mqtt: paho.Client
) -> None:
    stack = embedded.stack
    region, device, token = stack.new_region()
    assert stack.mqtt_address == ("127.0.0.1", stack.embedded_mqtt_port)

    async with (
        SseClient(stack.base_url, token, region) as sse,
        WsClient(stack.base_url, token, region, origin=stack.base_url) as ws,
    ):
        publish(mqtt, f"panic/ingest/{device['pid']}", sos(device, msg="Embedded SOS"))
        created = await wait_for(sse.incidents, what="incident.created on SSE")
        on_ws = await wait_for(ws.incidents, what="incident.created on WebSocket")

    assert [c["msg"] for c in created] == ["Embedded SOS"]
    assert (
        created[0]["region"] == region and created[0]["status"] == "open" and created[0]["source"] == "mqtt"
    )
    assert [e["id"] for e in on_ws] == [created[0]["id"]]
    listed = stack.get("/api/incidents", token)
    assert [item["id"] for item in listed["items"]] == [created[0]["id"]] and listed["total"] == 1
    assert stack.get(f"/api/incidents/{created[0]['id']}", token)["timeline"]
    assert (stack.var_dir / "naboom.sqlite3").is_file()


async def test_embedded_duplicate_mqtt_publish_yields_still_one_incident(
    embedded: Server, mqtt: paho.Client, admin: str
) -> None:
    stack = embedded.stack
    region, device, token = stack.new_region()
    payload = sos(device, msg="Once only")
    duplicates_before = stack.get("/api/ingest/stats", admin)["duplicates"]

    async with SseClient(stack.base_url, token, region) as sse:
        publish(mqtt, f"panic/ingest/{device['pid']}", payload)
        await wait_for(sse.incidents, what="the first delivery's incident")
        publish(mqtt, f"panic/ingest/{device['pid']}", payload)

        async def duplicate_counted() -> bool:
            return bool(stack.get("/api/ingest/stats", admin)["duplicates"] > duplicates_before)

        await wait_for(duplicate_counted, what="the second delivery counted as a duplicate")

    assert len(sse.incidents()) == 1
    listed = stack.get("/api/incidents", token)
    assert listed["total"] == 1 and listed["items"][0]["id"] == sse.incidents()[0]["id"]


async def test_embedded_http_submit_creates_one_incident_seen_live_and_a_duplicate_answers_200_same_id(
    embedded: Server,
) -> None:
    stack = embedded.stack
    region, device, token = stack.new_region()
    payload = sos(device, msg="Over HTTPS")

    async with SseClient(stack.base_url, token, region) as sse:
        first = stack.submit(payload)
        assert first.status_code == 201, first.text
        created = await wait_for(sse.incidents, what="incident.created of the HTTP submit")
        again = stack.submit(payload)

    assert again.status_code == 200 and again.json() == first.json()
    assert created[0]["id"] == first.json()["incident_id"] and created[0]["source"] == "http"
    listed = stack.get("/api/incidents", token)
    assert [item["id"] for item in listed["items"]] == [first.json()["incident_id"]]


async def test_embedded_broker_takes_mqtt_over_websockets_too(embedded: Server) -> None:
    stack = embedded.stack
    region, device, token = stack.new_region()

    async with SseClient(stack.base_url, token, region) as sse:
        async with _ws_publisher(stack.embedded_mqtt_ws_port) as client:
            publish(client, f"panic/ingest/{device['pid']}", sos(device, msg="Via WebSockets"))
        created = await wait_for(sse.incidents, what="the SOS sent over MQTT/WebSockets")
    assert created[0]["msg"] == "Via WebSockets"


async def test_embedded_sse_reconnect_with_last_event_id_receives_exactly_the_missed_events(
    embedded: Server, mqtt: paho.Client
) -> None:
    stack = embedded.stack
    region, device, token = stack.new_region()
    tag = uuid.uuid4().hex[:6]
    a, b, c, d = (f"{name}-{tag}" for name in "ABCD")
    topic = f"panic/ingest/{device['pid']}"

    async with SseClient(stack.base_url, token, region) as first:
        publish(mqtt, topic, sos(device, msg=a))
        created_a = await wait_for(lambda: first.events, what="A on the first connection")
    # Nobody watches the region now (memory channels): B over MQTT, C over HTTP.
    publish(mqtt, topic, sos(device, msg=b))
    await _stored(stack, token, 2)
    assert stack.submit(sos(device, msg=c)).status_code == 201

    again = await _replay_then_live(
        stack, mqtt, device, region, token, last_event_id=created_a[0]["id"], live_msg=d
    )
    assert [e["data"]["msg"] for e in again.events] == [b, c, d]
    assert again.ids() == sorted(set(again.ids())) and again.ids()[0] > created_a[0]["id"]


async def test_embedded_replay_still_has_an_event_sent_to_a_connection_that_then_dropped(
    embedded: Server, mqtt: paho.Client
) -> None:
    """The region's only watcher drops mid-event; its reconnect with Last-Event-ID still gets that event."""
    stack = embedded.stack
    region, device, token = stack.new_region()
    tag = uuid.uuid4().hex[:6]
    a, b, c, d = (f"{name}-{tag}" for name in "ABCD")
    topic = f"panic/ingest/{device['pid']}"

    async with open_stream(stack.base_url, token, region) as response:
        lines = response.aiter_lines()
        async with asyncio.timeout(20):
            while await anext(lines) != ": connected":
                pass
            publish(mqtt, topic, sos(device, msg=a))
            last_id = None
            while not (line := await anext(lines)).startswith("data:"):
                if line.startswith("id:"):
                    last_id = int(line[3:])
            assert json.loads(line[5:])["msg"] == a and last_id is not None
            publish(mqtt, topic, sos(device, msg=b))
            # B's frame has begun on the wire; the connection drops before the client has all of it.
            while not (await anext(lines)).startswith("id:"):
                pass
    # The client's Last-Event-ID is still A's. C arrives while nobody watches.
    publish(mqtt, topic, sos(device, msg=c))
    await _stored(stack, token, 3)

    again = await _replay_then_live(stack, mqtt, device, region, token, last_event_id=last_id, live_msg=d)
    assert [e["data"]["msg"] for e in again.events] == [b, c, d]


async def _replay_then_live(
    stack: Stack,
    mqtt: paho.Client,
    device: dict[str, Any],
    region: str,
    token: str,
    *,
    last_event_id: int | None,
    live_msg: str,
) -> SseClient:
    """Reconnect with ``last_event_id``; wait for the two missed events, then for ``live_msg`` sent live."""
    async with SseClient(stack.base_url, token, region, last_event_id=last_event_id) as again:
        await wait_for(lambda: len(again.events) >= 2, what="the replay of B and C")
        publish(mqtt, f"panic/ingest/{device['pid']}", sos(device, msg=live_msg))
        await wait_for(lambda: len(again.events) >= 3, what="D live after the replay")
    return again


async def _stored(stack: Stack, token: str, total: int) -> None:
    await wait_for(
        lambda: stack.get("/api/incidents", token)["total"] >= total, what=f"{total} incidents stored"
    )


# ``naboom dev`` ------------------------------------------------------------------------------

_LOGIN = re.compile(r"^\s*Login\s+(\S+) / (\S+)\s+\(operator of (\S+)\)", re.MULTILINE)
_DEVICE = re.compile(r"^\s*Device\s+(\{.*\})\s*$", re.MULTILINE)


async def test_naboom_dev_prints_a_login_and_device_that_work_end_to_end(tmp_path: Path) -> None:
    http_port, mqtt_port, ws_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NABOOM_")}
    env.update(
        {
            "NABOOM_VAR_DIR": str(tmp_path / "var"),
            "NABOOM_HTTP_PORT": str(http_port),
            "NABOOM_EMBEDDED_MQTT_PORT": str(mqtt_port),
            "NABOOM_EMBEDDED_MQTT_WS_PORT": str(ws_port),
        }
    )
    out_path, err_path = tmp_path / "dev.out", tmp_path / "dev.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(NABOOM, "dev", env=env, stdout=out, stderr=err)
    base = f"http://127.0.0.1:{http_port}"
    try:

        async def printed() -> str | None:
            if proc.returncode is not None:
                raise AssertionError(f"naboom dev exited with {proc.returncode}: {err_path.read_text()}")
            text = out_path.read_text()
            return text if _DEVICE.search(text) else None

        text = await wait_for(printed, timeout=60, what="naboom dev to print its login and device")
        login, device_line = _LOGIN.search(text), _DEVICE.search(text)
        assert login is not None and device_line is not None, text
        username, password, region = login.groups()
        device = json.loads(device_line.group(1))
        assert {"pid", "kid", "secret"} <= device.keys()
        assert f"mqtt://127.0.0.1:{mqtt_port}" in text and base in text

        async def healthy() -> bool:
            try:
                return httpx.get(f"{base}/monitoring/health/", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(healthy, timeout=60, what="naboom dev to be healthy")
        r = httpx.post(f"{base}/api/auth/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        token = r.json()["token"]

        async with SseClient(base, token, region) as sse:
            with publisher("127.0.0.1", mqtt_port) as client:
                publish(client, f"panic/ingest/{device['pid']}", sos(device, msg="Demo panic"))
            created = await wait_for(sse.incidents, what="the demo SOS on the live feed")
        assert created[0]["msg"] == "Demo panic" and created[0]["region"] == region
        assert (tmp_path / "var" / "naboom.sqlite3").is_file()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    # uvicorn shuts down cleanly, then re-raises the signal it caught: exit status is SIGTERM's.
    assert proc.returncode in (0, -signal.SIGTERM), err_path.read_text()
    assert "Application shutdown complete" in err_path.read_text()


@asynccontextmanager
async def _ws_publisher(port: int) -> AsyncIterator[paho.Client]:
    """A paho client speaking MQTT over WebSockets, connected for the block."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"test-ws-{uuid.uuid4().hex[:8]}", transport="websockets"
    )
    client.ws_set_options(path="/mqtt")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        await wait_for(client.is_connected, what="MQTT over WebSockets to connect")
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


async def test_embedded_server_is_its_own_worker_and_scheduler(embedded: Server, admin: str) -> None:
    stack = embedded.stack

    def background() -> dict[str, Any]:
        r = httpx.get(f"{stack.base_url}/api/system/background", headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 200, r.text
        return dict(r.json())

    status = background()
    assert status["scheduler"]["mode"] == "embedded"
    assert status["scheduler"]["leader"], status
    assert {q["name"]: q["backend"] for q in status["queues"]} == {"critical": "in-process", "general": "in-process"}
    # Interval tasks are sent when the scheduler starts: the in-process scheduler has sent some.
    sent = await wait_for(
        lambda: background()["scheduler"]["sent"].get(status["scheduler"]["leader"]),
        timeout=30,
        what="the in-process scheduler to send its first periodic task",
    )
    assert sent >= 1
