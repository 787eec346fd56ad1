#!/usr/bin/env python
"""Fan-out benchmark: K SOS to N live clients of one region (SSE and WebSocket); one JSON line out.

    .venv/bin/python bench/fanout.py                       # 5,000 clients, half SSE half WS, 20 SOS
    .venv/bin/python bench/fanout.py --clients 1000 --mode sse
    .venv/bin/python bench/fanout.py --quick               # 200 clients, 5 SOS

What runs: ``naboom serve`` on a fresh PostgreSQL database, Redis under the run's prefix and a
Mosquitto of its own (``bench/rig.py``); N clients on the region's feed, spread over
``--procs`` client processes (uvloop, raw sockets, minimal parsing: an SSE client de-chunks and
reads the ``id:`` line, a WebSocket client reads frame headers and the ``"event_id"`` field and
answers pings); then one warm-up SOS and K measured SOS, each published only once every client
has the previous one, so no two overlap. The warm-up proves every subscription is live (a
WebSocket is accepted before it subscribes, so a ``101`` alone proves nothing).

Latency of one SOS = the last of the N clients to receive it, minus the instant its transaction
committed. The commit instant is not guessed: the incident's ``created_at`` is the ingest's
receipt of the message, and the server's own ``naboom_ingest_latency_seconds{since="receipt"}``
histogram (``/metrics``) grows, for this one-message batch, by exactly receipt → commit (its
clock is read right after the commit); the SOS never overlap, so the growth read before and
after each SOS belongs to it alone (the count must grow by exactly one, or the run fails). The
server's wall clock is converted to CLOCK_MONOTONIC (system-wide on Linux: every process here
reads the same clock) with the offset measured at the start. Also reported: ``from_receipt_ms``
(receipt → last client, an upper bound that holds the ingest too) and ``spread_ms`` (first →
last client of each SOS).

The ceiling, same run, same clients, same N: ``bench/ceilings/fanout_server.py``, a bare asyncio
(uvloop) server that accepts the connections and, on a trigger, writes the same frame bytes (the
captured naboom frames) to every socket; its latency starts just before its first write. Naboom
is stopped while the ceiling runs. ``ratio`` = naboom p99 ÷ ceiling p99 (target ≤ 3).

Zero lost and zero doubled: every connection must receive every SOS event exactly once (by its
event id), on naboom and on the ceiling; and the table must hold exactly one incident per SOS.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import struct
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import httpx
from ceilings.fanout_server import raise_nofile
from rig import (
    HOST,
    Rig,
    bench_parser,
    free_port,
    log,
    port_open,
    run_bench,
    sse_stream,
    summary,
    wait_until,
)

CEILING = Path(__file__).resolve().parent / "ceilings" / "fanout_server.py"
CONNECT_CONCURRENCY = 64  # per client process: a burst of handshakes, not a SYN flood


# --- child role: a process of N/P clients -----------------------------------------------------


class Tally:
    """What one client process saw, per event id: how many receipts, first and last receipt."""

    def __init__(self, connections: int) -> None:
        self.connections = connections
        self.received: dict[int, int] = defaultdict(int)  # id -> receipts, all connections
        self.doubled = 0
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.complete = 0  # ids every connection has
        self.closed = 0

    def got(self, conn: ClientBase, event_id: int, now: int) -> None:
        if event_id in conn.seen:
            self.doubled += 1
            return
        conn.seen.add(event_id)
        n = self.received[event_id] = self.received[event_id] + 1
        if n == 1:
            self.first[event_id] = now
        self.last[event_id] = now
        if n == self.connections:
            self.complete += 1
            sys.stdout.write(f"complete {self.complete}\n")
            sys.stdout.flush()


class ClientBase(asyncio.Protocol):
    """A live-feed client: sends its request, waits for the answer's head, then counts events."""

    def __init__(self, tally: Tally, request: bytes) -> None:
        self.tally = tally
        self.request = request
        self.buffer = b""
        self.seen: set[int] = set()
        self.headed: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are no asyncio.Transport subclasses, but they are transports.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        self.buffer += data
        if not self.headed.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            self.headed.set_result(head)
        self.parse(now)

    def parse(self, now: int) -> None:
        raise NotImplementedError

    def connection_lost(self, exc: Exception | None) -> None:
        self.tally.closed += 1
        if not self.headed.done():
            self.headed.set_exception(ConnectionError(f"closed before answering: {exc!r}"))


class SseClient(ClientBase):
    """De-chunks the body and reads the ``id:`` of each complete frame."""

    sse = b""

    def parse(self, now: int) -> None:
        buf = self.buffer
        while True:
            eol = buf.find(b"\r\n")
            if eol < 0:
                break
            size = int(buf[:eol], 16)
            if len(buf) < eol + 2 + size + 2:
                break
            self.sse += buf[eol + 2 : eol + 2 + size]
            buf = buf[eol + 2 + size + 2 :]
        self.buffer = buf
        while (end := self.sse.find(b"\n\n")) >= 0:
            frame, self.sse = self.sse[:end], self.sse[end + 2 :]
            if frame.startswith(b"id: "):
                self.tally.got(self, int(frame[4 : frame.index(b"\n")]), now)


class WsClient(ClientBase):
    """Reads unmasked server frames: text frames' ``"event_id"``, pings answered with pongs."""

    def parse(self, now: int) -> None:
        buf = self.buffer
        while len(buf) >= 2:
            opcode, n = buf[0] & 0x0F, buf[1] & 0x7F
            at = 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, at = struct.unpack_from("!H", buf, 2)[0], 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, at = struct.unpack_from("!Q", buf, 2)[0], 10
            if len(buf) < at + n:
                break
            payload, buf = buf[at : at + n], buf[at + n :]
            if opcode == 1:
                key = payload.find(b'"event_id":')
                if key >= 0:
                    start = key + 11
                    stop = start
                    while payload[stop : stop + 1].isdigit():
                        stop += 1
                    self.tally.got(self, int(payload[start:stop]), now)
            elif opcode == 9 and self.transport is not None:
                self.transport.write(_masked(0x8A, payload))
        self.buffer = buf


def _masked(first: int, payload: bytes) -> bytes:
    """A client-to-server frame (clients must mask; a zero mask keeps the payload as is)."""
    return struct.pack("!BB", first, 0x80 | len(payload)) + b"\0\0\0\0" + payload


def _request(mode: str, host: str, port: int, region: str, token: str) -> bytes:
    if mode == "sse":
        return (
            f"GET /panic/api/stream?region={region}&token={token} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /ws/alerts/{region}/?token={token} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def run_clients(args: argparse.Namespace) -> None:
    """Connect ``count`` clients, say ``ready``, count events until stdin says ``done``, print the tally."""
    loop = asyncio.get_running_loop()
    tally = Tally(args.count)
    cls = SseClient if args.mode == "sse" else WsClient
    clients: list[ClientBase] = []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    failures: list[str] = []

    async def connect() -> None:
        async with gate:
            try:
                _, client = await loop.create_connection(
                    lambda: cls(tally, _request(args.mode, HOST, args.port, args.region, args.token)),
                    HOST,
                    args.port,
                )
                head = await asyncio.wait_for(client.headed, args.timeout)
            except (OSError, TimeoutError) as exc:
                failures.append(repr(exc))
                return
            status = head.split(b"\r\n", 1)[0]
            if b" 200 " not in status and b" 101 " not in status:
                failures.append(status.decode(errors="replace"))
                return
            clients.append(client)

    await asyncio.gather(*(connect() for _ in range(args.count)))
    print(f"ready {len(clients)} {len(failures)} {failures[:3]!r}", flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.readline()  # "done"
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    out = {
        "connected": len(clients),
        "failures": len(failures),
        "doubled": tally.doubled,
        "closed_early": tally.closed,
        "events": {str(i): [tally.received[i], tally.first[i], tally.last[i]] for i in tally.received},
    }
    print("result " + json.dumps(out), flush=True)


# --- orchestration ------------------------------------------------------------------------------


@dataclass
class ClientProc:
    """One client process as the benchmark drives it."""

    mode: str
    count: int
    proc: asyncio.subprocess.Process
    complete: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    progressed: asyncio.Event = field(default_factory=asyncio.Event)

    async def pump(self) -> None:
        """Follow the child's stdout: ``complete k`` progress, then the ``result`` line."""
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            text = line.decode().strip()
            if text.startswith("complete "):
                self.complete = int(text.split()[1])
                self.progressed.set()
            elif text.startswith("result "):
                self.result = json.loads(text[7:])


def _split(total: int, mode: str, procs: int) -> list[tuple[str, int]]:
    """``(mode, clients)`` per process: ``both`` gives half the processes (and clients) to each kind."""
    kinds = ["sse", "ws"] if mode == "both" else [mode]
    per_kind = max(1, procs // len(kinds))
    plan = []
    for k, kind in enumerate(kinds):
        share = total // len(kinds) + (1 if k < total % len(kinds) else 0)
        for p in range(per_kind):
            plan.append((kind, share // per_kind + (1 if p < share % per_kind else 0)))
    return [(kind, n) for kind, n in plan if n]


async def start_clients(
    args: argparse.Namespace, port: int, region: str, token: str
) -> tuple[list[ClientProc], list[asyncio.Task[None]]]:
    """Start the client processes and wait until all have connected (or failed loudly)."""
    procs: list[ClientProc] = []
    for mode, n in _split(args.clients, args.mode, args.procs):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--role", "clients", "--mode", mode, "--count", str(n),
            "--port", str(port), "--region", region, "--token", token, "--timeout", str(args.timeout),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        procs.append(ClientProc(mode, n, proc))
    t0 = time.monotonic()
    for c in procs:
        assert c.proc.stdout is not None
        line = (await asyncio.wait_for(c.proc.stdout.readline(), args.timeout)).decode().split(maxsplit=3)
        if not line or line[0] != "ready" or int(line[1]) != c.count:
            raise RuntimeError(f"{c.mode} client process connected {line[1:] if line else '?'} of {c.count}")
    log(f"{args.clients} clients connected in {time.monotonic() - t0:.1f}s")
    return procs, [asyncio.create_task(c.pump()) for c in procs]


async def wait_complete(procs: list[ClientProc], k: int, within: float) -> None:
    """Until every client process reports that all its connections have ``k`` events."""
    deadline = time.monotonic() + within
    for c in procs:
        while c.complete < k:
            c.progressed.clear()
            left = deadline - time.monotonic()
            if left <= 0 or c.proc.returncode is not None:
                raise RuntimeError(
                    f"a {c.mode} client process has {c.complete} of {k} events on every connection"
                )
            try:
                await asyncio.wait_for(c.progressed.wait(), left)
            except TimeoutError:
                continue


async def finish_clients(procs: list[ClientProc], pumps: list[asyncio.Task[None]]) -> None:
    """Tell every client process ``done`` and collect the tallies."""
    for c in procs:
        assert c.proc.stdin is not None
        c.proc.stdin.write(b"done\n")
        await c.proc.stdin.drain()
    await asyncio.gather(*pumps)
    for c in procs:
        await c.proc.wait()
        if not c.result:
            raise RuntimeError(f"a {c.mode} client process exited {c.proc.returncode} without a tally")


async def commit_clock(http: httpx.AsyncClient) -> tuple[float, int]:
    """``(sum, count)`` of the server's receipt → commit histogram."""
    r = await http.get("/metrics")
    r.raise_for_status()
    total = count = None
    for line in r.text.splitlines():
        if line.startswith('naboom_ingest_latency_seconds_sum{since="receipt"}'):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith('naboom_ingest_latency_seconds_count{since="receipt"}'):
            count = int(float(line.rsplit(" ", 1)[1]))
    return (total or 0.0, count or 0)


def judge(procs: list[ClientProc], ids: list[int], start_ns: dict[int, int]) -> dict[str, Any]:
    """Lost/doubled over every connection and event; last-client latency per event, by kind and overall."""
    lost = doubled = 0
    last: dict[int, int] = {}
    first: dict[int, int] = {}
    by_kind: dict[str, list[float]] = defaultdict(list)
    for c in procs:
        doubled += c.result["doubled"]
        events = c.result["events"]
        for i in ids:
            got, f, la = events.get(str(i), (0, None, None))
            lost += c.count - got
            if got:
                first[i] = min(first.get(i, f), f)
                last[i] = max(last.get(i, la), la)
    for kind in {c.mode for c in procs}:
        for i in ids:
            lasts = [
                c.result["events"][str(i)][2]
                for c in procs
                if c.mode == kind and str(i) in c.result["events"]
            ]
            if lasts:
                by_kind[kind].append((max(lasts) - start_ns[i]) / 1e6)
    latencies = [(last[i] - start_ns[i]) / 1e6 for i in ids if i in last]
    spreads = [(last[i] - first[i]) / 1e6 for i in ids if i in last]
    return {
        "lost": lost,
        "doubled": doubled,
        "latency_ms": summary(latencies),
        "spread_ms": summary(spreads),
        "by_kind_latency_ms": {kind: summary(v) for kind, v in sorted(by_kind.items())},
    }


async def measure_naboom(rig: Rig, args: argparse.Namespace) -> tuple[dict[str, Any], list[bytes]]:
    """Clients on ``naboom serve``, warm-up and K SOS; returns the judgement and the frames sent."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from naboom.ingest.signing import signed_payload

    rig.mosquitto()
    db = rig.database()
    env = rig.env()
    rig.cli(env, "migrate")
    device = rig.device(env)
    name, password = rig.user(env, "operator", rig.region)
    serve = rig.serve(env)
    assert serve.base_url is not None
    token = rig.login(serve.base_url, name, password)
    port = int(env["NABOOM_HTTP_PORT"])

    mqtt = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-fanout-sos-{rig.run}")
    mqtt.connect(HOST, rig.mqtt_port or 0)
    mqtt.loop_start()
    wait_until(mqtt.is_connected, 20, "the SOS publisher to connect")
    frames: dict[int, bytes] = {}
    created: dict[str, tuple[int, str]] = {}  # msg -> (event id, created_at)

    async def probe(ready: asyncio.Event) -> None:
        # One full reader beside the cheap clients: it learns each event's id, data and frame.
        async with sse_stream(serve.base_url or "", token, rig.region) as events:
            ready.set()
            async for event in events:
                if event.type == "incident.created" and event.id is not None:
                    eid = int(event.id)
                    created[event.data["msg"]] = (eid, event.data["created_at"])
                    body = json.dumps(event.data, separators=(",", ":")).encode()
                    frames[eid] = b"id: %d\nevent: %s\ndata: %s\n\n" % (eid, event.type.encode(), body)

    def publish(msg: str) -> Any:
        payload = {
            "pid": device["pid"], "ts": int(time.time()), "nonce": f"{rig.run}-{msg}",
            "msg": msg, "lat": -24.53, "lng": 28.71, "acc": 10.0, "kid": device["kid"],
        }  # fmt: skip
        topic = f"panic/ingest/{device['pid']}"
        return mqtt.publish(topic, json.dumps(signed_payload(payload, device["secret"])), qos=1)

    procs, pumps = await start_clients(args, port, rig.region, token)
    http = httpx.AsyncClient(base_url=serve.base_url)
    to_commit: dict[str, float] = {}  # receipt → commit seconds of each SOS, from the server's histogram
    ready = asyncio.Event()
    probe_task = asyncio.create_task(probe(ready))
    try:
        await asyncio.wait_for(ready.wait(), args.timeout)
        offset = min((time.time_ns() - time.monotonic_ns()) for _ in range(5))
        # Warm-up: until one SOS reached every client. The ingest may report healthy a moment
        # before its subscription is in place, and a QoS 1 message sent before that goes nowhere.
        warmups = 0
        while True:
            warmups += 1
            publish(f"fanout warm-up {warmups}").wait_for_publish(args.timeout)
            try:
                await wait_complete(procs, 1, 10)
                break
            except RuntimeError:
                if warmups >= 3:
                    raise
                log("the warm-up SOS did not reach every client within 10 s; sending another")
        base = min(c.complete for c in procs)
        log(f"warm-up SOS reached every client: all {args.clients} subscriptions are live")
        for seq in range(1, args.sos + 1):
            msg = f"fanout {seq}"
            before = await commit_clock(http)
            await asyncio.to_thread(publish(msg).wait_for_publish, args.timeout)
            await wait_complete(procs, base + seq, args.timeout)
            after = await commit_clock(http)
            if after[1] - before[1] != 1:
                raise RuntimeError(
                    f"{msg}: the ingest committed {after[1] - before[1]} batches meanwhile, not 1"
                )
            to_commit[msg] = after[0] - before[0]
        await finish_clients(procs, pumps)
        wait_until(
            lambda: all(f"fanout {k}" in created for k in range(1, args.sos + 1)), 10, "the probe's SOS"
        )
    except Exception:
        stored = await db.asql("SELECT count(*) FROM incident")
        log(f"failed with {stored} incidents stored; serve's log ends:\n{serve.log()}")
        raise
    finally:
        probe_task.cancel()
        await asyncio.gather(probe_task, return_exceptions=True)
        await http.aclose()
        mqtt.loop_stop()
        mqtt.disconnect()
        for c in procs:
            if c.proc.returncode is None:
                c.proc.kill()
                await c.proc.wait()
    measured = [f"fanout {k}" for k in range(1, args.sos + 1)]
    ids = [created[msg][0] for msg in measured]
    receipt_ns = {
        created[msg][0]: int(datetime.fromisoformat(created[msg][1]).timestamp() * 1e9) - offset
        for msg in measured
    }
    commit_ns = {created[msg][0]: receipt_ns[created[msg][0]] + int(to_commit[msg] * 1e9) for msg in measured}
    result = judge(procs, ids, commit_ns)
    result["from_receipt_ms"] = judge(procs, ids, receipt_ns)["latency_ms"]
    result["receipt_to_commit_ms"] = summary([t * 1000 for t in to_commit.values()])
    # Exactly one incident per measured SOS (and per warm-up) in the table.
    rows = await db.asql(
        f"SELECT message, count(*) FROM incident WHERE device_pid = '{device['pid']}' GROUP BY 1"
    )
    per_msg = dict(line.rsplit("|", 1) for line in rows.splitlines())
    for msg in measured:
        n = int(per_msg.get(msg, 0))
        result["lost" if n == 0 else "doubled"] += abs(n - 1)
    result["incidents_stored"] = sum(int(n) for n in per_msg.values())
    result["warmups"] = warmups
    result["clients_connected"] = sum(c.result["connected"] for c in procs)
    serve.stop()  # the ceiling runs alone
    return result, [frames[i] for i in sorted(frames)]


async def measure_ceiling(rig: Rig, args: argparse.Namespace, frames: list[bytes]) -> dict[str, Any]:
    """The same clients on the bare server, the same frames fired one at a time."""
    port, control_port = free_port(), free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, str(CEILING), "--port", str(port), "--control-port", str(control_port),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    procs: list[ClientProc] = []
    try:
        assert server.stdout is not None
        await asyncio.wait_for(server.stdout.readline(), args.timeout)
        wait_until(lambda: port_open(control_port), 20, "the ceiling server")
        procs, pumps = await start_clients(args, port, rig.region, "none")
        reader, writer = await asyncio.open_connection(HOST, control_port)
        start_ns: dict[int, int] = {}
        for k, frame in enumerate(frames):
            writer.write(b"FIRE %d\n%s" % (len(frame), frame))
            await writer.drain()
            started, written = map(int, (await reader.readline()).split())
            if written != args.clients:
                raise RuntimeError(f"the ceiling wrote to {written} of {args.clients} clients")
            start_ns[int(frame[4 : frame.index(b"\n")])] = started
            await wait_complete(procs, k + 1, args.timeout)
        writer.close()
        await finish_clients(procs, pumps)
    finally:
        for c in procs:
            if c.proc.returncode is None:
                c.proc.kill()
                await c.proc.wait()
        server.terminate()
        await server.wait()
    ids = sorted(start_ns)[1:]
    return judge(procs, ids, {i: start_ns[i] for i in ids})


def body(args: argparse.Namespace) -> Any:
    def run(rig: Rig) -> dict[str, Any]:
        async def both() -> dict[str, Any]:
            naboom, frames = await measure_naboom(rig, args)
            log(f"naboom: latency {naboom['latency_ms']}, lost {naboom['lost']}, doubled {naboom['doubled']}")
            ceiling = await measure_ceiling(rig, args, frames)
            log(
                f"ceiling: latency {ceiling['latency_ms']}, lost {ceiling['lost']}, doubled {ceiling['doubled']}"
            )
            return {"naboom": naboom, "ceiling": ceiling}

        try:
            import uvloop

            out = uvloop.run(both())
        except ImportError:
            out = asyncio.run(both())
        naboom, ceiling = out["naboom"], out["ceiling"]
        measured, bare = naboom["latency_ms"]["p99"], ceiling["latency_ms"]["p99"]
        return {
            "variant": f"n={args.clients} {args.mode}",
            "quick": args.quick,
            "lost": naboom["lost"] + ceiling["lost"],
            "doubled": naboom["doubled"] + ceiling["doubled"],
            "measured": {
                "what": f"SOS commit → last of {args.clients} clients, p99",
                "value": measured,
                "unit": "ms",
            },
            "ceiling": {
                "what": "bare asyncio server writing the same frame, p99",
                "value": bare,
                "unit": "ms",
            },
            "ratio": round(measured / bare, 2) if bare else None,
            "target": {"text": "p99 ≤ 3 × ceiling", "ratio_max": 3},  # noqa: RUF001
            "clients": args.clients,
            "mode": args.mode,
            "client_procs": len(_split(args.clients, args.mode, args.procs)),
            "sos": args.sos,
            "latency_ms": naboom["latency_ms"],
            "naboom": naboom,
            "ceiling_detail": ceiling,
        }

    return run


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--clients", type=int, default=5000, help="live clients (default 5000)")
    parser.add_argument(
        "--mode", choices=["sse", "ws", "both"], default="both", help="client kind (default both)"
    )
    parser.add_argument("--sos", type=int, default=20, help="measured SOS (default 20)")
    parser.add_argument("--procs", type=int, default=4, help="client processes (default 4)")
    # Internal: the same file runs the client processes.
    parser.add_argument("--role", choices=["main", "clients"], default="main", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--region", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_nofile()
    if args.role == "clients":
        import uvloop

        uvloop.run(run_clients(args))
        return
    if args.quick:
        args.clients, args.sos = min(args.clients, 200), min(args.sos, 5)
    sys.exit(run_bench("fanout", args, body(args)))


if __name__ == "__main__":
    main()
