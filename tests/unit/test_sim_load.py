"""Load helpers: pre-signed payloads with markers, marker matching on live events, percentiles, SSE frames."""

from __future__ import annotations

import base64
import json

import httpx

from naboom_sim.credentials import Credentials
from naboom_sim.live import subscribed
from naboom_sim.load import Progress, marker_of, percentile, presign
from naboom_sim.signing import verify

SECRET = base64.b64encode(bytes(range(32))).decode()


def test_presigned_sos_go_round_robin_with_unique_signed_markers() -> None:
    devices = [Credentials(pid=f"d{i}", kid=1, secret=SECRET) for i in range(3)]
    prepared = presign(devices, 7, "run1")
    assert [p.device for p in prepared] == [0, 1, 2, 0, 1, 2, 0]
    payloads = [json.loads(p.body) for p in prepared]
    assert [p["msg"] for p in payloads] == [f"load run1-{i}" for i in range(7)]
    assert len({(p["pid"], p["nonce"]) for p in payloads}) == 7
    assert all(verify(p, SECRET) for p in payloads)
    assert prepared[4].topic == "panic/ingest/d1"


def test_markers_come_from_new_incidents_and_attached_sos() -> None:
    assert marker_of("incident.created", {"msg": "load r-1"}) == "load r-1"
    attached = {"msg": "load r-0", "change": {"type": "sos", "payload": {"msg": "load r-5"}}}
    assert marker_of("incident.updated", attached) == "load r-5"
    assert marker_of("incident.updated", {"change": {"type": "acknowledged", "payload": {}}}) is None
    assert marker_of("incident.created", {"msg": "SOS"}) is None
    assert marker_of("vehicle.position", {"msg": "load r-1"}) is None


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 90), percentile(values, 99)) == (50.0, 90.0, 99.0)
    assert percentile([7.0], 99) == 7.0 and percentile([], 50) is None


async def test_the_live_feed_reader_waits_for_the_greeting_and_parses_frames() -> None:
    body = (
        b"retry: 3000\n: connected\n\n: keep-alive\n\n"
        b'id: 1\nevent: incident.created\ndata: {"id": "a", "msg": "load r-0"}\n\n'
        b'id: 2\nevent: vehicle.position\ndata: {"id": "v"}\n\n'
    )

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["region"] == "ZA-LP" and request.url.params["token"] == "tok"
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://site") as client:
        async with subscribed(client, "ZA-LP", "tok") as events:
            got = [(e.type, e.data["id"]) async for e in events]
    assert got == [("incident.created", "a"), ("vehicle.position", "v")]


def test_the_progress_bar_shows_accepted_published_and_pending() -> None:
    assert Progress.bar(6, 3, 10, width=10) == "[###+++....] published 6/10  accepted 3"
    assert Progress.bar(10, 10, 10, width=10) == "[##########] published 10/10  accepted 10"
