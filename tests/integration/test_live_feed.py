"""The live feed's promises to operators, against real PostgreSQL, Redis and Mosquitto.

Replay after a reconnect, region isolation, the WebSocket Origin check, authentication on
every feed and every incident endpoint, and heartbeats on idle streams.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest

from tests.integration.live import SseClient, WsClient, open_stream, ws_handshake
from tests.support import Server, publish, publisher, sos, unique_pid, unique_region, wait_for

PROBLEM_JSON = "application/problem+json"
_PLACEHOLDERS = {"pid": "btn-x", "kid": "1", "code": "ZA-LP"}


@pytest.fixture(scope="module")
def mqtt(server: Server) -> Iterator[paho.Client]:
    """One device-side MQTT connection for the module (QoS 1, waits for each PUBACK)."""
    with publisher(*server.stack.mqtt_address) as client:
        yield client


def _publish_mqtt(client: paho.Client, device: dict[str, Any], msg: str) -> None:
    publish(client, f"panic/ingest/{device['pid']}", sos(device, msg=msg))


def _with_msg(client: SseClient, msg: str) -> Callable[[], dict[str, Any] | None]:
    return lambda: next((e for e in client.events if e["data"].get("msg") == msg), None)


def _msgs(client: SseClient) -> list[str]:
    return [e["data"]["msg"] for e in client.events]


def _assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    problem = r.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    return problem  # type: ignore[no-any-return]


# (a) replay --------------------------------------------------------------------------------


async def test_sse_reconnect_with_last_event_id_receives_exactly_the_missed_events_in_order(
    server: Server, mqtt: paho.Client
) -> None:
    stack = server.stack
    region, device, token = stack.new_region()
    tag = uuid.uuid4().hex[:6]
    a, b, c, d = (f"{name}-{tag}" for name in "ABCD")

    # The watcher stays connected throughout: it tells us when B and C have been broadcast.
    async with SseClient(stack.base_url, token, region) as watcher:
        async with SseClient(stack.base_url, token, region) as first:
            _publish_mqtt(mqtt, device, a)
            event_a = await wait_for(_with_msg(first, a), what="A on the first connection")
        assert _msgs(first) == [a]

        # Disconnected: B arrives over MQTT, C over HTTP submit.
        _publish_mqtt(mqtt, device, b)
        await wait_for(_with_msg(watcher, b), what="B broadcast")
        submitted = stack.submit(sos(device, msg=c))
        assert submitted.status_code == 201, submitted.text
        await wait_for(_with_msg(watcher, c), what="C broadcast")

        async with SseClient(stack.base_url, token, region, last_event_id=event_a["id"]) as again:
            await wait_for(_with_msg(again, c), what="the replay of B and C")
            # A live event after the replay shows the stream goes on without repeating B or C.
            _publish_mqtt(mqtt, device, d)
            await wait_for(_with_msg(again, d), what="D live after the replay")

    assert _msgs(again) == [b, c, d]
    assert _msgs(watcher) == [a, b, c, d]
    assert again.ids() == watcher.ids()[1:]
    assert event_a["id"] < again.ids()[0] < again.ids()[1] < again.ids()[2]
    assert [e["data"]["event_id"] for e in again.events] == again.ids()
    assert all(e["event"] == "incident.created" for e in again.events)


async def test_sse_reconnect_with_the_newest_event_id_replays_nothing(
    server: Server, mqtt: paho.Client
) -> None:
    stack = server.stack
    region, device, token = stack.new_region()
    tag = uuid.uuid4().hex[:6]

    async with SseClient(stack.base_url, token, region) as first:
        _publish_mqtt(mqtt, device, f"only-{tag}")
        newest = await wait_for(_with_msg(first, f"only-{tag}"), what="the only event")
    async with SseClient(stack.base_url, token, region, last_event_id=newest["id"]) as again:
        _publish_mqtt(mqtt, device, f"next-{tag}")
        await wait_for(_with_msg(again, f"next-{tag}"), what="the next live event")
    assert _msgs(again) == [f"next-{tag}"]


async def test_new_sse_subscriber_without_last_event_id_gets_only_events_after_it_connected(
    server: Server, mqtt: paho.Client
) -> None:
    """Nothing old is passed off as live: not on a region nobody here watched yet, nor after everyone left."""
    stack = server.stack
    region, device, token = stack.new_region()
    tag = uuid.uuid4().hex[:6]

    # Broadcast while nobody watches the region; stored (and in the replay history) all the same.
    _publish_mqtt(mqtt, device, f"before-anyone-{tag}")
    await wait_for(lambda: stack.get("/api/incidents", token)["total"] == 1, what="the unwatched SOS stored")
    async with SseClient(stack.base_url, token, region) as first:
        _publish_mqtt(mqtt, device, f"while-watched-{tag}")
        await wait_for(_with_msg(first, f"while-watched-{tag}"), what="the live SOS")
    assert _msgs(first) == [f"while-watched-{tag}"]

    # Everyone has left; another SOS; a new subscriber starts from now again.
    _publish_mqtt(mqtt, device, f"after-all-left-{tag}")
    await wait_for(lambda: stack.get("/api/incidents", token)["total"] == 3, what="the third SOS stored")
    async with (
        SseClient(stack.base_url, token, region) as second,
        WsClient(stack.base_url, token, region, origin=stack.base_url) as ws,
    ):
        _publish_mqtt(mqtt, device, f"last-{tag}")
        await wait_for(_with_msg(second, f"last-{tag}"), what="the last SOS on SSE")
        await wait_for(ws.incidents, what="the last SOS on WebSocket")
    assert _msgs(second) == [f"last-{tag}"]
    assert [e["msg"] for e in ws.events] == [f"last-{tag}"]


# (b) region isolation ----------------------------------------------------------------------


async def test_operator_of_another_region_receives_nothing_while_an_sos_of_region_r_is_broadcast(
    server: Server, mqtt: paho.Client
) -> None:
    stack = server.stack
    region, other = unique_region(), unique_region()
    device_r = stack.create_device(unique_pid(), region)
    device_other = stack.create_device(unique_pid(), other)
    token_r, token_other = stack.operator(region), stack.operator(other)
    origin = stack.base_url
    tag = uuid.uuid4().hex[:6]

    async with (
        SseClient(stack.base_url, token_r, region) as sse_r,
        SseClient(stack.base_url, token_other, other) as sse_other,
        WsClient(stack.base_url, token_other, other, origin=origin) as ws_other,
    ):
        _publish_mqtt(mqtt, device_r, f"for-r-{tag}")
        await wait_for(_with_msg(sse_r, f"for-r-{tag}"), what="the SOS on region R's stream")
        assert sse_other.events == [] and ws_other.events == []

        # The other region's feed is alive: its own SOS arrives, and it is all that ever did.
        _publish_mqtt(mqtt, device_other, f"for-other-{tag}")
        await wait_for(_with_msg(sse_other, f"for-other-{tag}"), what="the other region's own SOS on SSE")
        await wait_for(ws_other.incidents, what="the other region's own SOS on WebSocket")

    assert _msgs(sse_other) == [f"for-other-{tag}"]
    assert [e["msg"] for e in ws_other.events] == [f"for-other-{tag}"]
    assert _msgs(sse_r) == [f"for-r-{tag}"]


async def test_operator_cannot_open_the_feed_of_a_region_not_theirs(server: Server) -> None:
    stack = server.stack
    region, other = unique_region(), unique_region()
    token_other = stack.operator(other)

    async with SseClient(stack.base_url, token_other, region) as sse:
        pass
    assert sse.status == 404 and sse.problem is not None and region in sse.problem["detail"]
    assert await ws_handshake(stack.base_url, region, token=token_other, origin=stack.base_url) == 403


# (c) WebSocket Origin ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "http://127.0.0.1:1", "http://127.0.0.1.evil.example", "null"],
    ids=["other-site", "other-port", "lookalike-host", "opaque-null"],
)
async def test_websocket_handshake_with_a_foreign_origin_is_refused(server: Server, origin: str) -> None:
    stack = server.stack
    region = unique_region()
    token = stack.operator(region)
    assert await ws_handshake(stack.base_url, region, token=token, origin=origin) == 403


async def test_websocket_handshake_with_an_allowed_origin_is_accepted_and_carries_events(
    server: Server, mqtt: paho.Client
) -> None:
    stack = server.stack
    region, device, token = stack.new_region()
    port = stack.http_port
    tag = uuid.uuid4().hex[:6]

    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        assert await ws_handshake(stack.base_url, region, token=token, origin=origin) == 101
    async with WsClient(stack.base_url, token, region, origin=f"http://localhost:{port}") as ws:
        _publish_mqtt(mqtt, device, f"ws-{tag}")
        created = await wait_for(ws.incidents, what="incident.created on the WebSocket")
    assert created[0]["msg"] == f"ws-{tag}" and created[0]["region"] == region


# (d) live feeds need a token ---------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "not-a-token"], ids=["no-token", "forged-token"])
async def test_sse_without_a_valid_token_is_refused_with_401_problem_details(
    server: Server, token: str | None
) -> None:
    stack = server.stack
    async with SseClient(stack.base_url, token, unique_region()) as sse:
        pass
    assert sse.status == 401
    assert sse.content_type is not None and sse.content_type.startswith(PROBLEM_JSON)
    assert sse.problem is not None and sse.problem["status"] == 401
    assert "token" in sse.problem["detail"]
    assert sse.events == []


async def test_sse_takes_the_token_from_the_query_string_as_browsers_must(
    server: Server, mqtt: paho.Client
) -> None:
    stack = server.stack
    region, device, token = stack.new_region()
    tag = uuid.uuid4().hex[:6]
    async with SseClient(stack.base_url, token, region, token_in_query=True) as sse:
        _publish_mqtt(mqtt, device, f"query-{tag}")
        await wait_for(_with_msg(sse, f"query-{tag}"), what="the SOS on a ?token= stream")
    assert sse.status == 200


@pytest.mark.parametrize("token", [None, "not-a-token"], ids=["no-token", "forged-token"])
async def test_websocket_without_a_valid_token_is_refused(server: Server, token: str | None) -> None:
    stack = server.stack
    assert await ws_handshake(stack.base_url, unique_region(), token=token, origin=stack.base_url) == 403


# (e) nothing that shows incidents without a token ------------------------------------------


async def test_incident_list_and_detail_answer_401_problem_details_without_a_token(server: Server) -> None:
    stack = server.stack
    region = unique_region()
    submitted = stack.submit(sos(stack.create_device(unique_pid(), region), msg="exists"))
    assert submitted.status_code == 201, submitted.text
    incident_id = str(submitted.json()["incident_id"])
    token = stack.operator(region)
    # The incident is really there for someone with a token.
    assert stack.get(f"/api/incidents/{incident_id}", token)["id"] == incident_id

    for path in ("/api/incidents", f"/api/incidents/{incident_id}"):
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": f"Basic {token}"}):
            r = httpx.get(f"{stack.base_url}{path}", headers=headers)
            problem = _assert_problem(r, 401)
            assert incident_id not in r.text and "exists" not in r.text
            assert "token" in problem["detail"]
        # ``?token=`` is for live feeds only; REST does not take it.
        _assert_problem(httpx.get(f"{stack.base_url}{path}", params={"token": token}), 401)


async def test_every_route_except_login_submit_health_and_sms_callback_answers_401_without_a_token(
    server: Server,
) -> None:
    stack = server.stack
    # The SMS gateway's callback has its own shared secret (tests/integration/test_sms_alerts.py).
    public = {
        ("post", "/api/auth/login"),
        ("post", "/panic/api/submit"),
        ("get", "/monitoring/health"),
        ("post", "/api/sms/callback"),
    }
    doc = httpx.get(f"{stack.base_url}/schema/openapi.json").json()
    checked = []
    for path, operations in doc["paths"].items():
        # Every placeholder gets a well-formed value (ids are UUIDs, key ids integers), so routing matches.
        concrete = re.sub(r"\{(\w+)\}", lambda m: _PLACEHOLDERS.get(m[1], str(uuid.uuid4())), path)
        for method in operations:
            if (
                method not in {"get", "post", "put", "patch", "delete"}
                or (method, path.rstrip("/")) in public
            ):
                continue
            r = httpx.request(method.upper(), f"{stack.base_url}{concrete}?region=ZA-LP", json={})
            _assert_problem(r, 401)
            checked.append((method, path))
    assert ("get", "/api/incidents") in checked and ("get", "/api/incidents/{incident_id}") in checked
    assert ("get", "/panic/api/stream") in checked


async def test_login_with_wrong_credentials_is_401_problem_details_that_say_so(server: Server) -> None:
    stack = server.stack
    name = f"op-{uuid.uuid4().hex[:8]}"
    stack.create_user(name, "operator", unique_region(), password="right-password-1")
    url = f"{stack.base_url}/api/auth/login"

    wrong_password = httpx.post(url, json={"username": name, "password": "wrong-password-1"})
    unknown_user = httpx.post(url, json={"username": f"nobody-{name}", "password": "right-password-1"})
    for r in (wrong_password, unknown_user):
        problem = _assert_problem(r, 401)
        assert problem["detail"] == "wrong username or password"
        assert "token" not in problem and "set-cookie" not in r.headers
    # An unknown user reads exactly like a wrong password: nothing to learn about who exists.
    assert wrong_password.json() == unknown_user.json()
    assert httpx.post(url, json={"username": name, "password": "right-password-1"}).status_code == 200


# (f) heartbeats ----------------------------------------------------------------------------


async def test_idle_sse_stream_receives_keep_alive_comments(server: Server) -> None:
    stack = server.stack
    region = unique_region()
    token = stack.operator(region)
    seen: list[str] = []
    async with open_stream(stack.base_url, token, region) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        # Heartbeat is 1 s in tests (Stack.env); read lines until two of them have come.
        async with asyncio.timeout(20):
            async for line in response.aiter_lines():
                seen.append(line)
                if seen.count(": keep-alive") == 2:
                    break
    assert ": connected" in seen
    assert seen.index(": connected") < seen.index(": keep-alive")
    # Idle means idle: no event frames, only comments, the retry hint and blank separators.
    assert [line for line in seen if line and not line.startswith((":", "retry:"))] == []
