"""A signed SOS over MQTT reaches the operators of its region, and only them (real PG, Redis, Mosquitto)."""

from __future__ import annotations

import uuid

from tests.integration.live import SseClient, WsClient
from tests.support import Server, publish, publisher, sos, wait_for


async def test_mqtt_sos_reaches_sse_and_websocket_of_its_region_and_the_incident_list(server: Server) -> None:
    stack = server.stack
    region, other = f"ZA-{uuid.uuid4().hex[:6]}", f"ZA-{uuid.uuid4().hex[:6]}"
    device = stack.create_device(f"btn-{uuid.uuid4().hex[:8]}", region)
    stack.create_user(f"op-{region}", "operator", region)
    stack.create_user(f"op-{other}", "operator", other)
    token, other_token = stack.login(f"op-{region}"), stack.login(f"op-{other}")
    payload = sos(device, msg="Inbraak by die plaas")

    async with (
        SseClient(stack.base_url, token, region) as sse,
        WsClient(stack.base_url, token, region, origin=f"http://127.0.0.1:{stack.http_port}") as ws,
        SseClient(stack.base_url, other_token, region) as foreign,
    ):
        with publisher(*stack.mqtt_address) as client:
            publish(client, f"panic/ingest/{device['pid']}", payload)
        created = await wait_for(lambda: _first(sse.incidents()), what="incident.created on SSE")
        ws_created = await wait_for(lambda: _first([e for e in ws.events if e["type"] == "incident.created"]),
                                    what="incident.created on WebSocket")

    assert created["msg"] == "Inbraak by die plaas"
    assert created["region"] == region and created["status"] == "open"
    assert {"id", "msg", "lat", "lng", "ts", "acc", "created_at"} <= created.keys()
    assert ws_created["id"] == created["id"]
    assert foreign.status == 404 and foreign.events == []

    listed = stack.get("/api/incidents", token)
    assert [item["id"] for item in listed["items"]] == [created["id"]]
    assert stack.get("/api/incidents", other_token)["items"] == []


async def _first(items: list) -> object:
    return items[0] if items else None
