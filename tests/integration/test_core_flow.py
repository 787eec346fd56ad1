"""A signed SOS over MQTT reaches the operators of its region, and only them (real PG, Redis, Mosquitto)."""

from __future__ import annotations

from tests.integration.live import SseClient, WsClient
from tests.support import Server, publish, publisher, sos, unique_pid, unique_region, wait_for


async def test_mqtt_sos_reaches_sse_and_websocket_of_its_region_and_the_incident_list(server: Server) -> None:
    stack = server.stack
    region, other = unique_region(), unique_region()
    device = stack.create_device(unique_pid(), region)
    token, other_token = stack.operator(region), stack.operator(other)
    payload = sos(device, msg="Inbraak by die plaas")

    async with (
        SseClient(stack.base_url, token, region) as sse,
        WsClient(stack.base_url, token, region, origin=f"http://127.0.0.1:{stack.http_port}") as ws,
        SseClient(stack.base_url, other_token, region) as foreign,
    ):
        with publisher(*stack.mqtt_address) as client:
            publish(client, f"panic/ingest/{device['pid']}", payload)
        created = (await wait_for(sse.incidents, what="incident.created on SSE"))[0]
        ws_created = (await wait_for(ws.incidents, what="incident.created on WebSocket"))[0]

    assert created["msg"] == "Inbraak by die plaas"
    assert created["region"] == region and created["status"] == "open"
    assert {"id", "msg", "lat", "lng", "ts", "acc", "created_at"} <= created.keys()
    assert ws_created["id"] == created["id"]
    assert foreign.status == 404 and foreign.events == []

    listed = stack.get("/api/incidents", token)
    assert [item["id"] for item in listed["items"]] == [created["id"]]
    assert stack.get("/api/incidents", other_token)["items"] == []
