#!/usr/bin/env python
"""Ingest benchmark: N signed SOS through a real Mosquitto into ``naboom serve``; one JSON line out.

    .venv/bin/python bench/ingest.py                      # 5000 SOS, as fast as the publisher can
    .venv/bin/python bench/ingest.py --rate 1000          # a fixed offered load, for latency

It builds everything it needs and removes it again: a fresh PostgreSQL database (``createdb``),
``naboom migrate``, a device and an operator through the CLI, its own Mosquitto on a free
loopback port (generated config with raised ``max_inflight_messages``/``max_queued_messages``)
and ``naboom serve`` as a child process. Measured in the same run:

* ``accepted_per_s``: N ÷ (first publish → the Nth ``incident.created`` seen on an SSE stream;
  the database row count is the fallback if the stream fell behind). Every SOS must be stored
  exactly once or the run fails.
* ``latency_ms``: publish → SSE receipt, p50/p95/p99. The publisher puts its monotonic clock
  reading into each SOS's (signed) ``msg``; CLOCK_MONOTONIC is system-wide on Linux, so the
  publisher process and the SSE reader compare the same clock.
* ``ceiling_live_per_s``: a bare aiomqtt subscriber (persistent session, QoS 1, counts only)
  subscribed to the same topic while the ingest runs: same stream, same broker, same time.
* ``ceiling_drain_per_s``: the same subscriber draining N messages queued for its offline
  persistent session afterwards, with nothing else running (the subscriber-side limit).

Progress goes to stderr; stdout carries only the JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NABOOM = str(Path(sys.executable).parent / "naboom")
HOST = "127.0.0.1"
TOPIC_FILTER = "panic/ingest/+"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


# --- child role: publisher ----------------------------------------------------------------------


def run_publisher(args: argparse.Namespace) -> None:
    """Publish ``count`` signed SOS at QoS 1 (paced to ``rate``/s if set); print timings as JSON."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from naboom.ingest.signing import signed_payload

    device = json.loads(sys.stdin.readline())
    topic = f"panic/ingest/{device['pid']}"
    acked = 0
    last_ack = 0.0
    all_acked = threading.Event()

    def on_publish(client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        nonlocal acked, last_ack
        acked += 1
        last_ack = time.monotonic()
        if acked == args.count:
            all_acked.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(args.pub_inflight)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect(HOST, args.port)
    client.loop_start()
    run = uuid.uuid4().hex[:8]
    interval = 1.0 / args.rate if args.rate else 0.0
    t0 = time.monotonic()
    for seq in range(args.count):
        if interval:
            delay = t0 + seq * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        payload = {
            "pid": device["pid"],
            "ts": int(time.time()),
            "nonce": f"{run}-{seq}",
            "msg": f"bench {seq} {time.monotonic_ns()}",
            "lat": -24.53,
            "lng": 28.71,
            "acc": 10.0,
            "kid": device["kid"],
        }
        client.publish(topic, json.dumps(signed_payload(payload, device["secret"])), qos=1)
    t_sent = time.monotonic()
    ok = all_acked.wait(timeout=args.timeout)
    client.loop_stop()
    client.disconnect()
    print(
        json.dumps({"t0": t0, "t_sent": t_sent, "t_acked": last_ack, "acked": acked, "complete": ok}),
        flush=True,
    )


# --- child role: counting subscriber (the ceiling) ----------------------------------------------


async def run_counter(args: argparse.Namespace) -> None:
    """A bare aiomqtt subscriber with a persistent session that only counts.

    ``prepare``: create the session and its subscription, then leave (messages queue for it).
    ``live``: subscribe, say ``ready``, count ``count`` messages as they arrive.
    ``drain``: reconnect to the prepared session and count the ``count`` queued messages.
    """
    import aiomqtt

    client = aiomqtt.Client(
        hostname=HOST,
        port=args.port,
        identifier=args.client_id,
        protocol=aiomqtt.ProtocolVersion.V311,
        clean_session=False,
        keepalive=60,
    )
    t_connect = time.monotonic()
    async with client:
        if args.mode in ("prepare", "live"):
            await client.subscribe(TOPIC_FILTER, qos=1)
        if args.mode == "prepare":
            print(json.dumps({"prepared": True}), flush=True)
            return
        if args.mode == "live":
            print("ready", flush=True)
        seen = 0
        first = last = 0.0
        async with asyncio.timeout(args.timeout):
            async for _ in client.messages:
                last = time.monotonic()
                if seen == 0:
                    first = last
                seen += 1
                if seen == args.count:
                    break
    print(json.dumps({"t_connect": t_connect, "first": first, "last": last, "count": seen}), flush=True)


# --- orchestration --------------------------------------------------------------------------


class Teardown:
    """Undo steps, run last-in first-out, each one even if another failed."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], Any]]] = []

    def push(self, what: str, step: Callable[[], Any]) -> None:
        self._steps.append((what, step))

    def run(self) -> None:
        while self._steps:
            what, step = self._steps.pop()
            try:
                step()
            except Exception as exc:  # teardown reports and goes on
                log(f"teardown of {what} failed: {exc!r}")


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def child(role: str, *extra: str, port: int, count: int, timeout: float) -> list[str]:
    return [sys.executable, __file__, "--role", role, "--port", str(port), "--count", str(count),
            "--timeout", str(timeout), *extra]  # fmt: skip


def mosquitto_config(work: Path, port: int, args: argparse.Namespace) -> Path:
    conf = work / "mosquitto.conf"
    conf.write_text(
        "\n".join(
            [
                f"listener {port} {HOST}",
                "allow_anonymous true",
                "persistence false",
                # The ingest acknowledges after commit: in-flight caps its throughput (NOTES.md).
                f"max_inflight_messages {args.inflight}",
                # Everything published may be queued for a session at once; never drop any.
                f"max_queued_messages {args.count * 2 + 1000}",
                "max_queued_bytes 0",
                "set_tcp_nodelay true",
                f"log_dest file {work / 'mosquitto.log'}",
                "log_type error",
                "log_type warning",
                "",
            ]
        )
    )
    return conf


class SseReader:
    """Counts ``incident.created`` on one region's stream, keeping receipt times and messages."""

    def __init__(self, base_url: str, token: str, region: str, count: int) -> None:
        self.base_url, self.token, self.region, self.count = base_url, token, region, count
        self.received: list[tuple[int, str]] = []  # (monotonic ns at receipt, msg)
        self.connected = asyncio.Event()
        self.complete = asyncio.Event()
        self.resets = 0

    async def run(self) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"}
        async with (
            httpx.AsyncClient(base_url=self.base_url, timeout=None) as client,
            client.stream("GET", "/panic/api/stream", params={"region": self.region}, headers=headers) as r,
        ):
            r.raise_for_status()
            event = ""
            async for line in r.aiter_lines():
                if line.startswith(": connected"):
                    self.connected.set()
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "incident.created":
                    now = time.monotonic_ns()
                    self.received.append((now, json.loads(line[5:])["msg"]))
                    if len(self.received) >= self.count:
                        self.complete.set()
                        return
                elif line.startswith("data:") and event == "stream.reset":
                    self.resets += 1


@dataclass
class Rig:
    """Everything the measurement runs against, built by :func:`build`."""

    args: argparse.Namespace
    work: Path
    run: str
    region: str
    mqtt_port: int
    dbname: str
    base_url: str
    token: str
    device: dict[str, Any]
    drain_id: str


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Build the rig, measure, tear everything down (also on failure)."""
    teardown = Teardown()
    work = Path(tempfile.mkdtemp(prefix="naboom-bench-"))
    teardown.push("work dir", lambda: shutil.rmtree(work, ignore_errors=True))
    try:
        rig = build(args, work, teardown)
        result = asyncio.run(measure(rig))
        result["ceiling_drain_per_s"] = drain_ceiling(rig)
        return result
    finally:
        log("tearing down")
        teardown.run()


def build(args: argparse.Namespace, work: Path, teardown: Teardown) -> Rig:
    """Mosquitto, a fresh database, the CLI set-up, ``naboom serve``, a login, the drain session."""
    import httpx
    import redis

    run = uuid.uuid4().hex[:8]
    region = f"BENCH-{run.upper()}"  # upper case: Litestar upper-cases Redis stream keys

    # Mosquitto of our own, with limits fit for ack-after-commit.
    mqtt_port = free_port()
    conf = mosquitto_config(work, mqtt_port, args)
    mosquitto = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    teardown.push("mosquitto", lambda: stop_process(mosquitto))
    wait_until(lambda: port_open(mqtt_port) or mosquitto.poll() is not None, 20, "mosquitto to listen")
    if mosquitto.poll() is not None:
        raise RuntimeError(f"mosquitto exited with {mosquitto.returncode}; see {conf}")
    log(f"mosquitto pid {mosquitto.pid} on {HOST}:{mqtt_port}")

    # A fresh PostgreSQL database.
    dbname = f"naboom_bench_{run}"
    pg = ["-h", args.pg_host, "-p", str(args.pg_port), "-U", args.pg_user]
    subprocess.run(["createdb", *pg, dbname], check=True)
    teardown.push(
        "database", lambda: subprocess.run(["dropdb", *pg, "--force", "--if-exists", dbname], check=True)
    )
    db_url = f"postgresql+asyncpg://{args.pg_user}@{args.pg_host}:{args.pg_port}/{dbname}"

    # Redis: every key this run makes starts with its own prefix (event ids, live streams, task queues).
    prefix = f"naboom-bench-{run}"
    r = redis.Redis.from_url(args.redis_url)
    teardown.push("redis keys", lambda: _drop_keys(r, f"{prefix}*"))

    http_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NABOOM_")}
    env.update(
        {
            "NABOOM_DATABASE_URL": db_url,
            "NABOOM_REDIS_URL": args.redis_url,
            "NABOOM_REDIS_PREFIX": prefix,
            "NABOOM_MQTT_URL": f"mqtt://{HOST}:{mqtt_port}",
            "NABOOM_HTTP_PORT": str(http_port),
            "NABOOM_MQTT_CLIENT_ID": f"bench-ingest-{run}",
            "NABOOM_VAR_DIR": str(work / "var"),
            "NABOOM_SECRET_KEY": f"bench-secret-{uuid.uuid4().hex}",
            "NABOOM_LOG_LEVEL": "WARNING",
            # Every SOS comes from one device: each must open its own incident, as N devices would.
            "NABOOM_SOS_ATTACH_WINDOW_SECONDS": "0",
        }
    )
    if args.batch:
        env["NABOOM_MQTT_BATCH_SIZE"] = str(args.batch)

    def cli(*cmd: str, stdin: str | None = None) -> str:
        out = subprocess.run(
            [NABOOM, *cmd], env=env, input=stdin, capture_output=True, text=True, timeout=120
        )
        if out.returncode != 0:
            raise RuntimeError(f"naboom {' '.join(cmd)} failed: {out.stderr}")
        return out.stdout

    cli("migrate")
    device = json.loads(cli("device", "create", f"bench-{run}", "--region", region))
    password = uuid.uuid4().hex
    cli("user", "create", f"bench-op-{run}", "--role", "operator", "--region", region, stdin=password + "\n")
    log(f"database {dbname} migrated; device {device['pid']} and operator of {region} created")

    serve_log = work / "serve.log"
    with serve_log.open("wb") as out:
        serve = subprocess.Popen([NABOOM, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    teardown.push("naboom serve", lambda: stop_process(serve))
    base = f"http://{HOST}:{http_port}"

    def healthy() -> bool:
        if serve.poll() is not None:
            raise RuntimeError(f"naboom serve exited with {serve.returncode}:\n{_tail(serve_log)}")
        try:
            return httpx.get(f"{base}/monitoring/health/", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, 60, "naboom serve to be healthy")
    login = httpx.post(f"{base}/api/auth/login", json={"username": f"bench-op-{run}", "password": password})
    login.raise_for_status()
    log(f"naboom serve pid {serve.pid} healthy on {base}")

    # The drain ceiling's persistent session exists (and collects every publish) from now on.
    drain_id = f"bench-drain-{run}"
    subprocess.run(
        child("counter", "--mode", "prepare", "--client-id", drain_id, port=mqtt_port, count=args.count,
              timeout=args.timeout),
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return Rig(args, work, run, region, mqtt_port, dbname, base, login.json()["token"], device, drain_id)


async def measure(rig: Rig) -> dict[str, Any]:
    """Publish N, watch the stream (and the table), count alongside with the live ceiling subscriber."""
    args = rig.args
    timeout = args.timeout
    live = await asyncio.create_subprocess_exec(
        *child("counter", "--mode", "live", "--client-id", f"bench-live-{rig.run}", port=rig.mqtt_port,
               count=args.count, timeout=timeout),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    sse = SseReader(rig.base_url, rig.token, rig.region, args.count)
    sse_task = asyncio.create_task(sse.run())
    publisher: asyncio.subprocess.Process | None = None
    try:
        assert live.stdout is not None
        ready = await asyncio.wait_for(live.stdout.readline(), 30)
        if ready.strip() != b"ready":
            raise RuntimeError(f"live counter did not start: {ready!r}")
        await asyncio.wait_for(sse.connected.wait(), 30)

        log(
            f"publishing {args.count} SOS" + (f" at {args.rate:g}/s" if args.rate else " as fast as possible")
        )
        publisher = await asyncio.create_subprocess_exec(
            *child("publisher", "--rate", str(args.rate), "--pub-inflight", str(args.pub_inflight),
                   port=rig.mqtt_port, count=args.count, timeout=timeout),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        pub_out, _ = await asyncio.wait_for(
            publisher.communicate(json.dumps(rig.device).encode() + b"\n"), timeout
        )
        pub = json.loads(pub_out.decode().strip().splitlines()[-1])
        if not pub["complete"]:
            raise RuntimeError(f"the broker acknowledged only {pub['acked']} of {args.count} publishes")
        log(f"published at {args.count / (pub['t_sent'] - pub['t0']):.0f}/s; every PUBACK in")

        # Done when the stream has all N. Should the stream fall behind (its backlog is bounded),
        # the table is the judge: the end is then the newest stored incident's receive time.
        where = f"device_pid = '{rig.device['pid']}'"
        t_rows: float | None = None
        deadline = time.monotonic() + timeout
        seen, last_progress = 0, time.monotonic()
        while not sse.complete.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sse.complete.wait(), 0.25)
            if sse_task.done():
                sse_task.result()
            if len(sse.received) != seen:
                seen, last_progress = len(sse.received), time.monotonic()
            elif time.monotonic() - last_progress > 2 and await _rows(rig, where) >= args.count:
                newest = await _psql(
                    rig, f"SELECT extract(epoch FROM max(received_at)) FROM incident WHERE {where}"
                )
                t_rows = float(newest) - time.time() + time.monotonic()
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"timed out: {await _rows(rig, where)} of {args.count} stored, {seen} on SSE"
                )
        stored = await _rows(rig, where)
        if stored != args.count:
            raise RuntimeError(
                f"{stored} incidents stored for {args.count} distinct SOS (must be exactly once)"
            )

        live_out, _ = await asyncio.wait_for(live.communicate(), timeout)
        live_result = json.loads(live_out.decode().strip().splitlines()[-1])
    finally:
        sse_task.cancel()
        await asyncio.gather(sse_task, return_exceptions=True)
        for proc in (live, publisher):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()

    t0 = pub["t0"]
    if sse.complete.is_set():
        t_end, measured_by = sse.received[-1][0] / 1e9, "sse"
    else:
        assert t_rows is not None
        t_end, measured_by = t_rows, "rows"
    latencies = sorted((recv - int(msg.split()[2])) / 1e6 for recv, msg in sse.received)
    return {
        "count": args.count,
        "offered_rate_per_s": args.rate or None,
        "publish_rate_per_s": round(args.count / (pub["t_sent"] - t0), 1),
        "accepted_per_s": round(args.count / (t_end - t0), 1),
        "accepted_measured_by": measured_by,
        "elapsed_s": round(t_end - t0, 3),
        "stored_exactly_once": stored == args.count,
        "sse_events": len(sse.received),
        "sse_distinct": len({msg.split()[1] for _, msg in sse.received}),
        "latency_ms": {
            "p50": round(percentile(latencies, 50), 1),
            "p95": round(percentile(latencies, 95), 1),
            "p99": round(percentile(latencies, 99), 1),
            "max": round(latencies[-1], 1),
        }
        if latencies
        else None,
        "ceiling_live_per_s": round(live_result["count"] / (live_result["last"] - t0), 1),
        "mosquitto": {"max_inflight_messages": args.inflight, "max_queued_messages": args.count * 2 + 1000},
        "ingest_batch_size": args.batch or 200,
    }


def drain_ceiling(rig: Rig) -> float:
    """The counting subscriber draining the N messages queued for its offline session."""
    drain = subprocess.run(
        child("counter", "--mode", "drain", "--client-id", rig.drain_id, port=rig.mqtt_port, count=rig.args.count,
              timeout=rig.args.timeout),
        check=True, capture_output=True, text=True, timeout=rig.args.timeout + 30,
    )  # fmt: skip
    result = json.loads(drain.stdout.strip().splitlines()[-1])
    if result["count"] != rig.args.count:
        raise RuntimeError(f"the drain counter got {result['count']} of {rig.args.count}")
    return round(result["count"] / (result["last"] - result["t_connect"]), 1)


async def _rows(rig: Rig, where: str) -> int:
    return int(await _psql(rig, f"SELECT count(*) FROM incident WHERE {where}"))


async def _psql(rig: Rig, sql: str) -> str:
    a = rig.args
    proc = await asyncio.create_subprocess_exec(
        "psql", "-h", a.pg_host, "-p", str(a.pg_port), "-U", a.pg_user, "-d", rig.dbname, "-tAc", sql,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"psql failed: {err.decode()}")
    return out.decode().strip()


def _drop_keys(r: Any, pattern: str) -> None:
    keys = list(r.scan_iter(match=pattern, count=1000))
    if keys:
        r.delete(*keys)
    log(f"removed redis keys {sorted(k.decode() for k in keys)}")


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=5000, help="SOS to publish (default 5000)")
    parser.add_argument("--rate", type=float, default=0, help="offered SOS per second (default: unlimited)")
    parser.add_argument(
        "--timeout", type=float, default=300, help="give up after this many seconds per phase"
    )
    parser.add_argument("--inflight", type=int, default=1000, help="Mosquitto max_inflight_messages")
    parser.add_argument(
        "--batch", type=int, default=0, help="NABOOM_MQTT_BATCH_SIZE (default: the product's)"
    )
    parser.add_argument("--pub-inflight", type=int, default=1000, help="publisher's in-flight window")
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    # Internal: the same file runs the publisher and the counting subscriber as child processes.
    parser.add_argument(
        "--role", choices=["main", "publisher", "counter"], default="main", help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["prepare", "live", "drain"], help=argparse.SUPPRESS)
    parser.add_argument("--client-id", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count < 1:
        parser.error("--count must be at least 1")

    if args.role == "publisher":
        run_publisher(args)
    elif args.role == "counter":
        asyncio.run(run_counter(args))
    else:
        result = bench(args)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
