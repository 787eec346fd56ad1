"""Acks to the device that raised an SOS, incident summaries to its region (the outbox bridge's, but for
the MQTT ingest's own ``received`` acks)."""

from __future__ import annotations

import json

from tests.integration.incident_helpers import act, add_vehicle, call, ok
from tests.integration.outbox_helpers import outbox_rows, subscriber
from tests.support import MQTT_HOST, MQTT_PORT, Server, Stack, publish, publisher, sos, wait_for_sync


def test_an_accepted_sos_is_acknowledged_once_and_a_duplicate_again(real_stack: Stack, server: Server) -> None:
    region, device, token = real_stack.new_region()
    pid = device["pid"]
    ack_topic, alert_topic = f"panic/ack/{pid}", f"panic/alerts/{region}"
    message = sos(device, lat=-24.53712, lng=28.71349)
    with subscriber(MQTT_HOST, MQTT_PORT, ack_topic, alert_topic) as sub, publisher(MQTT_HOST, MQTT_PORT) as pub:
        publish(pub, f"panic/ingest/{pid}", message)
        (first,) = wait_for_sync(lambda: sub.on(ack_topic), what="the received ack")
        assert first["status"] == "received"
        assert first["nonce"] == message["nonce"]
        incident = ok(call(real_stack, token, "GET", f"/api/incidents/{first['incident_id']}"))
        assert incident["device"] == pid

        # The device missed the ack and sends again: the same incident id comes back.
        publish(pub, f"panic/ingest/{pid}", message)
        acks = wait_for_sync(lambda: sub.at_least(ack_topic, 2), what="the repeat ack")
        assert acks == [first, first]

        (created,) = wait_for_sync(lambda: sub.on(alert_topic), what="the region's incident.created summary")
        assert created == {
            "type": "incident.created",
            "id": first["incident_id"],
            "status": "open",
            "region": region,
            "created_at": created["created_at"],
            "lat": -24.54,
            "lng": 28.71,
        }
        assert "SOS" not in json.dumps(created) and pid not in json.dumps(created)

    # The MQTT ingest sends a received ack itself (ahead of the SOS's PUBACK): no outbox row for
    # either; the summary went through the outbox, once.
    assert outbox_rows(real_stack, f"topic = '{ack_topic}'") == []
    summaries = outbox_rows(real_stack, f"topic = '{alert_topic}'")
    assert [payload["type"] for _, payload, _ in summaries] == ["incident.created"]


def test_each_move_of_an_incident_reaches_its_device_in_order(real_stack: Stack, server: Server) -> None:
    region, device, token = real_stack.new_region()
    vehicle = add_vehicle(real_stack, region)
    ack_topic, alert_topic = f"panic/ack/{device['pid']}", f"panic/alerts/{region}"
    with subscriber(MQTT_HOST, MQTT_PORT, ack_topic, alert_topic) as sub:
        r = real_stack.submit(sos(device))
        assert r.status_code == 201, r.text
        incident_id = r.json()["incident_id"]
        wait_for_sync(lambda: sub.on(ack_topic), what="the received ack")
        ok(act(real_stack, token, incident_id, "acknowledge"))
        ok(act(real_stack, token, incident_id, "dispatch", {"vehicle_id": vehicle["id"]}))
        ok(act(real_stack, token, incident_id, "resolve", {"note": "all clear"}))

        acks = wait_for_sync(lambda: sub.at_least(ack_topic, 4), what="four acks")
        assert [(a["status"], a["incident_id"]) for a in acks] == [
            (status, incident_id) for status in ("received", "acknowledged", "dispatched", "resolved")
        ]
        alerts = wait_for_sync(lambda: sub.at_least(alert_topic, 4), what="four summaries")
        assert [(a["type"], a["status"]) for a in alerts] == [
            ("incident.created", "open"),
            ("incident.updated", "acknowledged"),
            ("incident.updated", "dispatched"),
            ("incident.updated", "resolved"),
        ]
        assert {a["id"] for a in alerts} == {incident_id}
