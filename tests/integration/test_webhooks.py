"""Webhooks: incident events POSTed, signed with the webhook's secret, retried, never in MQTT's way."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.integration.incident_helpers import assert_problem, call, ok
from tests.integration.outbox_helpers import outbox_rows, subscriber
from tests.support import MQTT_HOST, MQTT_PORT, Server, Stack, sos, wait_for_sync


class Receiver:
    """A local HTTP endpoint: records every request and answers with ``statuses`` in turn (then 200)."""

    def __init__(self, statuses: list[int], hold_first: threading.Event | None = None) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses = statuses
        self.hold_first = hold_first
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    n = len(receiver.requests)
                    receiver.requests.append((dict(self.headers.items()), body))
                if n == 0 and receiver.hold_first is not None:
                    receiver.hold_first.wait(10)
                status = receiver.statuses[n] if n < len(receiver.statuses) else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def seen(self, count: int) -> list[tuple[dict[str, str], bytes]] | None:
        with self.lock:
            return list(self.requests) if len(self.requests) >= count else None


@contextmanager
def receiver(statuses: list[int], hold_first: threading.Event | None = None) -> Iterator[Receiver]:
    rec = Receiver(statuses, hold_first)
    thread = threading.Thread(target=rec.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        if hold_first is not None:
            hold_first.set()
        rec.server.shutdown()
        rec.server.server_close()


def signed(headers: dict[str, str], body: bytes, secret: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Naboom-Signature"], expected)


def test_an_sos_is_posted_once_signed_and_the_secret_is_never_shown_again(
    real_stack: Stack, server: Server
) -> None:
    admin = real_stack.admin()
    region, device, _ = real_stack.new_region()
    secret = "s3cret-webhook-value-" + region
    with receiver([]) as rec:
        hook = ok(
            call(
                real_stack,
                admin,
                "POST",
                "/api/webhooks",
                {"url": rec.url, "secret": secret, "event_types": ["incident.created"], "region": region},
            ),
            201,
        )
        assert hook["secret"] == secret
        r = real_stack.submit(sos(device))
        assert r.status_code == 201, r.text
        incident_id = r.json()["incident_id"]

        ((headers, body),) = wait_for_sync(lambda: rec.seen(1), what="the webhook POST")
        assert signed(headers, body, secret)
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Naboom-Event"] == "incident.created"
        event = json.loads(body)
        assert (event["type"], event["id"], event["region"]) == ("incident.created", incident_id, region)
        rows = outbox_rows(real_stack, f"topic = 'webhook:{hook['id']}'")
        assert [(payload["id"], published) for _, payload, published in rows] == [(incident_id, True)]
        assert headers["X-Naboom-Delivery"].isdigit()

    shown = ok(call(real_stack, admin, "GET", f"/api/webhooks/{hook['id']}"))
    assert "secret" not in shown and secret not in json.dumps(shown)
    assert shown["secret_hint"] == f"…{secret[-4:]}"
    listed = ok(call(real_stack, admin, "GET", "/api/webhooks"))
    assert hook["id"] in {h["id"] for h in listed["items"]} and secret not in json.dumps(listed)
    assert secret not in server.log()


def test_a_failing_receiver_is_retried_until_delivered_without_delaying_mqtt_acks(
    real_stack: Stack, server: Server
) -> None:
    admin = real_stack.admin()
    region, device, _ = real_stack.new_region()
    _, other_device, _ = real_stack.new_region()
    ack_topic = f"panic/ack/{other_device['pid']}"
    hold = threading.Event()
    with receiver([500, 500], hold_first=hold) as rec, subscriber(MQTT_HOST, MQTT_PORT, ack_topic) as sub:
        hook = ok(
            call(
                real_stack,
                admin,
                "POST",
                "/api/webhooks",
                {"url": rec.url, "event_types": ["incident.created", "incident.updated"], "region": region},
            ),
            201,
        )
        r = real_stack.submit(sos(device))
        assert r.status_code == 201, r.text
        incident_id = r.json()["incident_id"]
        wait_for_sync(lambda: rec.seen(1), what="the first (held) webhook POST")

        # While the receiver holds its first request, another SOS is acknowledged over MQTT.
        r = real_stack.submit(sos(other_device))
        assert r.status_code == 201, r.text
        (acked,) = wait_for_sync(lambda: sub.on(ack_topic), what="the other SOS's ack")
        assert acked["status"] == "received"
        assert not hold.is_set() and len(rec.requests) == 1
        hold.set()

        attempts = wait_for_sync(lambda: rec.seen(3), timeout=30, what="two failures and a success")
        assert {json.loads(body)["id"] for _, body in attempts} == {incident_id}
        assert len({headers["X-Naboom-Delivery"] for headers, _ in attempts}) == 1
        assert all(signed(headers, body, hook["secret"]) for headers, body in attempts)
        rows = wait_for_sync(
            lambda: (
                (rows := outbox_rows(real_stack, f"topic = 'webhook:{hook['id']}'")) and rows[0][2] and rows
            ),
            what="the delivery to be marked published",
        )
        assert [(payload["id"], published) for _, payload, published in rows] == [(incident_id, True)]
        assert len(rec.requests) == 3


def test_webhooks_are_validated(real_stack: Stack, server: Server) -> None:
    admin = real_stack.admin()
    region, _, operator = real_stack.new_region()
    good = {"url": "https://example.org/hook", "event_types": ["incident.created"]}
    for url, why in (("ftp://example.org/x", "http"), ("http:///nohost", "host"), ("example.org", "http")):
        problem = assert_problem(call(real_stack, admin, "POST", "/api/webhooks", {**good, "url": url}), 422)
        assert why in problem["detail"]
    problem = assert_problem(
        call(real_stack, admin, "POST", "/api/webhooks", {**good, "region": "nowhere"}), 422
    )
    assert "nowhere" in problem["detail"]
    assert_problem(
        call(real_stack, admin, "POST", "/api/webhooks", {**good, "event_types": ["incident.deleted"]}), 400
    )
    assert_problem(call(real_stack, admin, "POST", "/api/webhooks", {**good, "event_types": []}), 400)
    assert_problem(call(real_stack, admin, "POST", "/api/webhooks", {**good, "secret": "short"}), 400)
    assert_problem(call(real_stack, operator, "POST", "/api/webhooks", good), 403)

    hook = ok(call(real_stack, admin, "POST", "/api/webhooks", {**good, "region": region}), 201)
    assert len(hook["secret"]) >= 32
    problem = assert_problem(
        call(real_stack, admin, "PATCH", f"/api/webhooks/{hook['id']}", {"url": "javascript:alert(1)"}), 422
    )
    assert "http" in problem["detail"]
    changed = ok(call(real_stack, admin, "PATCH", f"/api/webhooks/{hook['id']}", {"active": False}))
    assert changed["active"] is False and "secret" not in changed
    assert call(real_stack, admin, "DELETE", f"/api/webhooks/{hook['id']}").status_code == 204
    assert_problem(call(real_stack, admin, "GET", f"/api/webhooks/{hook['id']}"), 404)
