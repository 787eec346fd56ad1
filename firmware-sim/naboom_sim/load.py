"""Load: many devices' signed SOS at a target rate, each matched to its live-feed event.

Every SOS carries a unique marker in its (signed) ``msg`` — ``load <run>-<seq>`` — which the
region's ``incident.created`` event echoes; the time from publish to that event is the latency
reported. Payloads are signed before the clock starts so the publisher only publishes.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import paho.mqtt.client as paho

from naboom_sim.credentials import Credentials
from naboom_sim.live import subscribed
from naboom_sim.signing import sign
from naboom_sim.sos import ingest_topic
from naboom_sim.transport import Broker, paho_client

MARKER = "load "


@dataclass(frozen=True)
class LoadPlan:
    """Target rate (SOS/s over all devices), for how long, over how many connections, and the grace at the end."""

    rate: float
    duration: float
    connections: int = 4
    grace: float = 10.0


@dataclass(frozen=True)
class Prepared:
    """One pre-signed SOS: which connection sends it, its topic and bytes."""

    device: int
    topic: str
    body: bytes


def presign(
    devices: list[Credentials], count: int, run: str, lat: float = -24.53, lng: float = 28.71
) -> list[Prepared]:
    """``count`` signed SOS, round-robin over ``devices``, with markers ``load <run>-<seq>``."""
    now = int(time.time())
    prepared = []
    for seq in range(count):
        index = seq % len(devices)
        device = devices[index]
        payload = {
            "pid": device.pid,
            "ts": now,
            "nonce": f"{run}-{seq}",
            "msg": f"{MARKER}{run}-{seq}",
            "lat": lat,
            "lng": lng,
            "kid": device.kid,
        }
        prepared.append(
            Prepared(index, ingest_topic(device.pid), json.dumps(sign(payload, device.secret)).encode())
        )
    return prepared


def marker_of(event_type: str, data: dict[str, Any]) -> str | None:
    """The load marker an incident event carries: the new incident's ``msg``, or an attached SOS's."""
    if event_type == "incident.created":
        msg = data.get("msg")
    elif event_type == "incident.updated":
        change = data.get("change") or {}
        msg = (change.get("payload") or {}).get("msg") if change.get("type") == "sos" else None
    else:
        return None
    return msg if isinstance(msg, str) and msg.startswith(MARKER) else None


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 to 100) of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class Connections:
    """Paho clients publishing QoS 1 from their own network threads: K shared ones, or one per device.

    With broker logins (an ACL'd broker) each device must connect as itself (client id = pid).
    """

    def __init__(self, broker: Broker, devices: list[Credentials], count: int, run: str) -> None:
        self.per_device = any(d.mqtt_username for d in devices)
        if self.per_device:
            self.clients = [paho_client(broker, d.pid, d.mqtt_username, d.mqtt_password) for d in devices]
        else:
            self.clients = [paho_client(broker, f"naboom-sim-load-{run}-{k}") for k in range(max(1, count))]
        self._connected = [threading.Event() for _ in self.clients]
        self.failures: list[str] = []
        self._broker = broker

    def start(self, timeout: float = 30.0) -> None:
        for client, ready in zip(self.clients, self._connected, strict=True):
            client.on_connect = _on_connect(ready, self.failures)
            client.connect_async(self._broker.host, self._broker.port)
            client.loop_start()
        deadline = time.monotonic() + timeout
        for ready in self._connected:
            if not ready.wait(max(0.0, deadline - time.monotonic())):
                raise ConnectionError(
                    f"could not connect to {self._broker}: {'; '.join(self.failures) or 'timed out'}"
                )

    def client_for(self, item: Prepared, seq: int) -> paho.Client:
        return self.clients[item.device if self.per_device else seq % len(self.clients)]

    def stop(self) -> None:
        for client in self.clients:
            client.disconnect()
            client.loop_stop()

    async def open(self) -> None:
        await asyncio.to_thread(self.start)

    async def close(self) -> None:
        await asyncio.to_thread(self.stop)


class LoadPublisher(Protocol):
    """What :func:`run_load` publishes through: :class:`Connections`, or a benchmark's own."""

    clients: list[Any]

    async def open(self) -> None: ...

    def client_for(self, item: Prepared, seq: int) -> Any: ...

    async def close(self) -> None: ...


ConnectionsFactory = Callable[[Broker, list[Credentials], int, str], LoadPublisher]


def _on_connect(ready: threading.Event, failures: list[str]) -> Callable[..., None]:
    def on_connect(
        _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any = None
    ) -> None:
        if reason.is_failure:
            failures.append(str(reason))
        else:
            ready.set()

    return on_connect


@dataclass
class _Tally:
    published_at: list[float]
    seen_at: dict[int, float]
    doubled: int = 0
    published: int = 0


class Progress:
    """One self-rewriting status line on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._last = 0.0

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.enabled and (force or now - self._last >= 0.25):
            self._last = now
            sys.stderr.write(f"\r\x1b[K{text}")
            sys.stderr.flush()

    @staticmethod
    def bar(published: int, accepted: int, total: int, width: int = 30) -> str:
        """``[####+++...]``: ``#`` accepted, ``+`` published and awaiting their event, ``.`` still to publish."""
        if total <= 0:
            return "[] nothing to publish"
        done, sent = width * accepted // total, width * published // total
        cells = "#" * done + "+" * max(0, sent - done) + "." * (width - max(sent, done))
        return f"[{cells}] published {published}/{total}  accepted {accepted}"

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


async def run_load(
    devices: list[Credentials],
    broker: Broker,
    http: httpx.AsyncClient,
    region: str,
    token: str,
    plan: LoadPlan,
    progress: Progress | None = None,
    published_wall: list[float] | None = None,
    connections_for: ConnectionsFactory | None = None,
) -> dict[str, Any]:
    """Publish at the plan's rate while reading the live feed; returns the report (one JSON-ready dict).

    ``published_wall``, when given, receives each SOS's publish time (Unix seconds, by sequence
    number): benchmarks compare it with times the server stored, which the report cannot carry.
    ``connections_for`` replaces the paho :class:`Connections` (a benchmark's leaner publisher).
    """
    progress = progress or Progress(False)
    run = uuid.uuid4().hex[:8]
    total = max(0, round(plan.rate * plan.duration))
    prepared = presign(devices, total, run)
    prefix = f"{MARKER}{run}-"
    tally = _Tally(published_at=[0.0] * total, seen_at={})
    all_seen = asyncio.Event()

    async with subscribed(http, region, token) as events:

        async def listen() -> None:
            async for event in events:
                marker = marker_of(event.type, event.data)
                if marker is None or not marker.startswith(prefix):
                    continue
                seq = int(marker[len(prefix) :])
                if seq in tally.seen_at:
                    tally.doubled += 1
                    continue
                tally.seen_at[seq] = time.monotonic()
                if len(tally.seen_at) >= total:
                    all_seen.set()

        listener = asyncio.create_task(listen())
        connections = (connections_for or Connections)(broker, devices, plan.connections, run)
        try:
            await connections.open()
            start = await _publish(prepared, connections, plan, tally, progress, total)
            publish_seconds = time.monotonic() - start
            if total:
                try:
                    await asyncio.wait_for(all_seen.wait(), plan.grace)
                except TimeoutError:
                    pass
            progress.show(progress.bar(tally.published, len(tally.seen_at), total), force=True)
            progress.done()
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await connections.close()
    if published_wall is not None:
        # One offset for all: the monotonic stamps keep their spacing, the wall clock anchors them.
        offset = time.time() - time.monotonic()
        published_wall.extend(t + offset for t in tally.published_at[: tally.published])

    latencies = sorted(
        (tally.seen_at[seq] - tally.published_at[seq]) * 1000
        for seq in tally.seen_at
        if seq < tally.published
    )

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    accepted = len(tally.seen_at)
    # Throughput over the time the system took to accept them: when it falls behind, the last
    # events arrive after publishing ended, and that time counts.
    accept_seconds = max(publish_seconds, max(tally.seen_at.values(), default=start) - start)
    return {
        "run": run,
        "devices": len(devices),
        "connections": len(connections.clients),
        "target_rate": plan.rate,
        "duration_s": round(publish_seconds, 3),
        "published": tally.published,
        "accepted": accepted,
        "accepted_per_s": round(accepted / accept_seconds, 1) if accept_seconds > 0 else None,
        "latency_ms": {
            "p50": ms(percentile(latencies, 50)),
            "p90": ms(percentile(latencies, 90)),
            "p95": ms(percentile(latencies, 95)),
            "p99": ms(percentile(latencies, 99)),
            "max": ms(latencies[-1] if latencies else None),
        },
        "lost": tally.published - accepted,
        "doubled": tally.doubled,
    }


async def _publish(
    prepared: list[Prepared],
    connections: LoadPublisher,
    plan: LoadPlan,
    tally: _Tally,
    progress: Progress,
    total: int,
) -> float:
    """Publish everything on schedule (sequence ``i`` is due at ``i / rate``); returns the start time."""
    start = time.monotonic()
    seq = 0
    while seq < total:
        now = time.monotonic()
        due = min(total, int((now - start) * plan.rate) + 1)
        while seq < due:
            item = prepared[seq]
            tally.published_at[seq] = time.monotonic()
            connections.client_for(item, seq).publish(item.topic, item.body, qos=1)
            seq += 1
        tally.published = seq
        progress.show(progress.bar(seq, len(tally.seen_at), total))
        if seq < total:
            # Sleep until the next one is due, but batch at most 10 ms of them.
            next_due = start + seq / plan.rate
            await asyncio.sleep(min(0.01, max(0.0, next_due - time.monotonic())))
    return start


async def provision(
    http: httpx.AsyncClient, admin_token: str, region: str, count: int, out: Path, prefix: str = "sim"
) -> list[dict[str, Any]]:
    """Create ``count`` devices in ``region`` (the region too, if missing) and write their credentials, one a line."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    r = await http.post("/api/regions", json={"code": region, "name": region}, headers=headers)
    if r.status_code not in (201, 409):
        r.raise_for_status()
    batch = uuid.uuid4().hex[:6]
    created = []
    for i in range(count):
        r = await http.post(
            "/api/devices", json={"pid": f"{prefix}-{batch}-{i}", "region": region}, headers=headers
        )
        r.raise_for_status()
        created.append(r.json())
    await asyncio.to_thread(_write_lines, out, created)
    return created


def _write_lines(out: Path, rows: list[dict[str, Any]]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
