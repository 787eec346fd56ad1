"""``/metrics`` against a real server: ingest counters, latency, live connections, queues, token."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.live import SseClient
from tests.support import Server, Stack, free_port, sos, wait_for

pytestmark = pytest.mark.timeout(120)


def _samples(
    stack: Stack, headers: dict[str, str] | None = None
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = httpx.get(f"{stack.base_url}/metrics", headers=headers or {}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def region(server: Server) -> Iterator[tuple[str, dict, str]]:
    yield server.stack.new_region()


def test_ingest_counters_move_for_an_accepted_a_duplicate_and_a_rejected_sos(
    server: Server, region: tuple[str, dict, str]
) -> None:
    _, device, _ = region
    stack = server.stack
    before = _samples(stack)
    payload = sos(device)
    assert stack.submit(payload).status_code == 201
    assert stack.submit(payload).status_code == 200
    forged = {**sos(device), "sig": "AAAA"}
    assert stack.submit(forged).status_code >= 400
    after = _samples(stack)
    msgs = "naboom_ingest_messages_total"
    assert (
        _value(after, msgs, outcome="accepted", reason="")
        == _value(before, msgs, outcome="accepted", reason="") + 1
    )
    assert (
        _value(after, msgs, outcome="duplicate", reason="")
        == _value(before, msgs, outcome="duplicate", reason="") + 1
    )
    assert (
        _value(after, msgs, outcome="rejected", reason="bad_signature")
        == _value(before, msgs, outcome="rejected", reason="bad_signature") + 1
    )
    # Every committed batch is timed from receipt; the new incident from its device time too.
    latency = "naboom_ingest_latency_seconds_count"
    assert _value(after, latency, since="receipt") >= _value(before, latency, since="receipt") + 2
    assert _value(after, latency, since="device") == _value(before, latency, since="device") + 1


async def test_open_sse_connections_are_a_gauge(server: Server, region: tuple[str, dict, str]) -> None:
    name, _, token = region
    stack = server.stack
    base = _value(_samples(stack), "naboom_live_connections", transport="sse")
    async with SseClient(stack.base_url, token, name), SseClient(stack.base_url, token, name):
        await wait_for(
            lambda: _value(_samples(stack), "naboom_live_connections", transport="sse") == base + 2,
            what="two open SSE connections counted",
        )
    await wait_for(
        lambda: _value(_samples(stack), "naboom_live_connections", transport="sse") == base,
        what="closed SSE connections uncounted",
    )


def test_scrape_reports_queues_workers_breakers_sms_and_subscriber(server: Server) -> None:
    samples = _samples(server.stack)
    names = {name for name, _ in samples}
    for queue in ("critical", "general"):
        assert ("naboom_queue_length", frozenset({("queue", queue)})) in samples
        # No worker runs beside this server: its heartbeat has never been seen.
        assert _value(samples, "naboom_worker_heartbeat_age_seconds", queue=queue) == float("inf")
    assert _value(samples, "naboom_mqtt_connected") == 1.0
    assert "naboom_sms_breaker_state" in names
    assert "naboom_devices_silent" in names


def test_a_metrics_token_is_required_when_configured(real_stack: Stack, tmp_path: Path) -> None:
    # Its own MQTT client id: the module's server keeps its session.
    stack = dataclasses.replace(
        real_stack,
        http_port=free_port(),
        client_id=f"{real_stack.client_id}-t",
        extra={"NABOOM_METRICS_TOKEN": "scrape-me"},
    )
    srv = Server(stack, tmp_path / "serve.log")
    srv.start()
    try:
        refused = httpx.get(f"{stack.base_url}/metrics", timeout=10)
        assert refused.status_code == 401
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "scrape-me" not in refused.text
        wrong = httpx.get(f"{stack.base_url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401
        assert "naboom_ingest_messages_total" in {
            name for name, _ in _samples(stack, {"Authorization": "Bearer scrape-me"})
        }
    finally:
        srv.stop()


def test_every_metric_the_alert_rules_use_is_in_a_real_scrape(server: Server) -> None:
    rules = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml").read_text()
    )
    used = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in re.findall(r"\bnaboom_[a-z_]+\b", rule["expr"])
    }
    r = httpx.get(f"{server.stack.base_url}/metrics", timeout=10)
    # A family is declared (HELP/TYPE) even before its first labelled sample.
    declared = set()
    for family in text_string_to_metric_families(r.text):
        declared.add(family.name)
        declared.update(sample.name for sample in family.samples)
        if family.type == "counter":
            declared.add(f"{family.name}_total")
    assert used <= declared, used - declared


async def test_open_websocket_connections_are_a_gauge(server: Server, region: tuple[str, dict, str]) -> None:
    name, _, token = region
    stack = server.stack
    base = _value(_samples(stack), "naboom_live_connections", transport="ws")
    url = stack.base_url.replace("http://", "ws://") + f"/ws/alerts/{name}/?token={token}"
    async with websockets.connect(url, open_timeout=20):
        await wait_for(
            lambda: _value(_samples(stack), "naboom_live_connections", transport="ws") == base + 1,
            what="the open WebSocket counted",
        )
    await wait_for(
        lambda: _value(_samples(stack), "naboom_live_connections", transport="ws") == base,
        what="the closed WebSocket uncounted",
    )
