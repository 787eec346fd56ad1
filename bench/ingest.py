#!/usr/bin/env python
"""Ingest benchmark: signed SOS from the simulator through a real Mosquitto into ``naboom serve``.

    flock /tmp/naboom-bench.lock .venv/bin/python bench/ingest.py                 # (a) 30,000 SOS flat out
    flock /tmp/naboom-bench.lock .venv/bin/python bench/ingest.py --rate 1000     # (b) 1,000/s for 10 s
    flock /tmp/naboom-bench.lock .venv/bin/python bench/ingest.py --sweep 250,500,1000,2000,4000
    .venv/bin/python bench/ingest.py --quick                                      # a smoke run

Built fresh each run and removed after (``bench/rig.py``): a PostgreSQL database, a Mosquitto
on a free port (``max_inflight_messages`` raised: the ingest acknowledges after commit),
Redis keys under a run prefix, ``naboom serve``; an admin provisions ``--devices`` devices
through the API and an operator of the region reads its live feed. The load is the device
simulator's (``naboom_sim.load.run_load``): pre-signed SOS published at QoS 1 over
``--connections`` connections (through ``bench/driver.py``, which spares the two cores the
simulator's paho threads), each matched by its ``msg`` marker to its ``incident.created``
event on the SSE feed.

Modes and the keys of the one JSON line (besides ``bench``, ``ok``, ``lost``, ``doubled``,
``load_avg``, ``quick`` of ``bench/rig.py`` and the ``measured``/``ceiling``/``ratio``/``target``/
``variant`` summary of bench/README.md):

* (a) default, ``--count N`` (30,000) published as fast as the simulator goes; bench ``ingest``,
  ``variant`` ``n=N``, ``measured`` = ``accepted_per_s`` = N ÷ (first publish → the newest
  incident's ``created_at``), ``ceiling`` = the faster bare aiomqtt subscriber (live or drain),
  target ≥ 0.5 times that and ≥ 5,000/s. Its latencies are queueing times behind the burst.
* (b) ``--rate R [--duration D]`` (D = 10 s); ``variant`` ``rate=R``, ``measured`` = the
  publish→SSE p99 (target ≤ 50 ms when R = 1,000).
* (c) ``--sweep R1,R2,…``: bench ``ingest-sweep``, ``points``: one object per rate with the
  per-run keys below and ``offered_per_s`` (the latency-against-load plot).

Per run: ``published``, ``publish_per_s`` (the simulator), ``accepted_per_s``, ``stored``
(incident rows), ``latency_ms`` (publish → the event read on the first server's SSE feed, after
commit and broadcast; the simulator's numbers), ``commit_latency_ms`` (publish → the incident
row's ``created_at``, which is set when the INSERT executes inside the batch's transaction,
just before its COMMIT: PostgreSQL keeps no commit time unless ``track_commit_timestamp`` is
on), both ``{p50, p90, p95, p99, max}``; ``sse_seen``; ``feeds`` (with several servers: what
each other server's feed saw of the run, once and twice); ``serve_cpu_percent`` (per server,
100 = one core), ``serve_cpu_ms_per_sos`` (comparable between runs on a busy machine),
``machine_cpu_percent`` (every core of the machine, whoever used it); ``device_acks``: each
SOS's ack to its device (``panic/ack/<pid>``, sent by the ingest ahead of the SOS's PUBACK) as
``mosquitto_sub -q 1`` on ``panic/ack/#`` receives it for the devices: ``acks``, ``missing``
(incidents of the run whose device heard no ack; non-zero fails the run, ``acks_missing``),
``acked_per_s`` (SOS acknowledged to their devices per second: from the first publish to the
last ack), ``ack_ms`` (the SOS's publish → its ack at the subscriber, ``{p50, p99, max}``) and
``out_after_load_s`` (after the load, the wait for the last of them; a device sends its SOS
again after 10 s without an ack).

Per bench run, measured in the same run:

* ``ceilings.aiomqtt_live_per_s``: with ``--live-ceiling``, mode (a) only, a bare aiomqtt
  subscriber (QoS 1, counts only, its own process) on the same topic while the ingest runs. Off
  by default: it competes with the ingest for the same two cores and Mosquitto delivers every
  message twice (in a run of 2026-12-07 it took 56 % of a core while ``naboom serve`` had 59 %),
  and the drain ceiling below, measured alone, has always been the higher of the two.
* ``ceilings.aiomqtt_drain_per_s``: a bare aiomqtt subscriber draining everything published,
  queued for its offline persistent session, with nothing else running.
* ``ceilings.mosquitto_sub_drain_per_s``: ``mosquitto_sub -q 1 -C N`` draining its session the same way.
* ``unacked``: messages the broker still held for the ingest's session once the load was
  in: ``naboom serve`` is killed (SIGKILL: nothing more can be acknowledged), a client takes
  over its session (the broker must report the session present) and sentinels are published;
  whatever the broker hands over before the sentinel was delivered to the ingest and never
  acknowledged, or still queued. Non-zero fails the run (``ok`` false).
* ``lost`` = SOS published whose incident is missing from the table or whose event never came
  on a feed; ``doubled`` = extra rows for one SOS plus events seen twice. Either non-zero fails
  the run (exit 1).
* ``ingest_batches``: the ingest's batch sizes from ``/metrics`` (``mean``, ``batches``), to
  see whether ``NABOOM_MQTT_BATCH_SIZE`` batches fill under load; ``devices``,
  ``connections``, ``mosquitto_max_inflight``, ``batch_size``: the set-up.

Progress goes to stderr; stdout carries only the JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from driver import LeanConnections
from rig import (
    HOST,
    Naboom,
    Rig,
    bench_parser,
    cpu_seconds,
    free_port,
    log,
    machine_cpu,
    run_bench,
    sse_stream,
    summary,
    wait_until,
)

TOPIC_FILTER = "panic/ingest/#"


# --- the installation ------------------------------------------------------------------------------


@dataclass
class Installation:
    """The product as the load sees it: servers, a region's operator token, provisioned devices."""

    rig: Rig
    servers: list[Naboom]
    token: str
    devices_path: Path
    client_ids: list[str] = field(default_factory=list)


def install(rig: Rig, args: argparse.Namespace, processes: int = 1, **extra: str) -> Installation:
    """Mosquitto, a migrated database, ``processes`` times ``naboom serve``, an operator and the devices.

    With more than one process they share the MQTT load through ``$share`` (distinct client
    ids, one share group) and the live feed through Redis.
    """
    rig.mosquitto(inflight=args.inflight)
    rig.database()
    if args.batch:
        extra["NABOOM_MQTT_BATCH_SIZE"] = str(args.batch)
    if processes > 1:
        extra["NABOOM_MQTT_SHARE_GROUP"] = f"bench-{rig.run}"
    base_env = rig.env(**extra)
    rig.cli(base_env, "migrate")
    admin, admin_pw = rig.user(base_env, "admin")
    op, op_pw = rig.user(base_env, "operator", rig.region)
    servers, client_ids = [], []
    for k in range(processes):
        # One installation: the same secret key (tokens), database and Redis prefix; a port each.
        env = {**base_env, "NABOOM_HTTP_PORT": str(free_port())} if k else base_env
        env["NABOOM_MQTT_CLIENT_ID"] = f"bench-ingest-{rig.run}-{k}"
        servers.append(rig.serve(env, name=f"serve-{k}"))
        client_ids.append(env["NABOOM_MQTT_CLIENT_ID"])
    base = servers[0].base_url
    assert base is not None
    token = rig.login(base, op, op_pw)
    devices_path = rig.work / "devices.jsonl"
    asyncio.run(_provision(base, rig.login(base, admin, admin_pw), rig.region, args.devices, devices_path))
    log(f"{args.devices} devices in {rig.region}; {processes} server(s) up")
    return Installation(rig, servers, token, devices_path, client_ids)


async def _provision(base_url: str, admin_token: str, region: str, count: int, out: Path) -> None:
    import httpx

    from naboom_sim.load import provision

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        await provision(http, admin_token, region, count, out, prefix="bench")


# --- one load run ------------------------------------------------------------------------------------


async def load_run(
    inst: Installation, args: argparse.Namespace, rate: float, duration: float, other_feeds: int = 0
) -> dict[str, Any]:
    """The simulator's load at ``rate`` for ``duration``; its report plus the publish times.

    The simulator reads the live feed of the first server; with ``other_feeds`` the next
    servers' feeds are watched too (``feeds``: what each saw of this run, once and twice).
    """
    import httpx

    from naboom_sim.credentials import load_devices
    from naboom_sim.load import LoadPlan, run_load
    from naboom_sim.transport import Broker

    assert inst.rig.mqtt_port is not None
    published: list[float] = []
    plan = LoadPlan(rate, duration, args.connections, grace=args.timeout)
    watchers = [FeedWatcher(server, inst) for server in inst.servers[1 : 1 + other_feeds]]
    tasks = [asyncio.create_task(w.run()) for w in watchers]
    try:
        for w, task in zip(watchers, tasks, strict=True):
            ready = asyncio.create_task(w.ready.wait())
            await asyncio.wait({ready, task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if task.done():
                task.result()  # the watcher failed: say why
            if not w.ready.is_set():
                raise RuntimeError(f"the live feed of {w.server.name} did not open")
        async with httpx.AsyncClient(base_url=inst.servers[0].base_url or "", timeout=30) as http:
            report = await run_load(
                load_devices(inst.devices_path),
                Broker("mqtt", HOST, inst.rig.mqtt_port),
                http,
                inst.rig.region,
                inst.token,
                plan,
                published_wall=published,
                connections_for=LeanConnections,
            )
        deadline = time.monotonic() + args.timeout
        while any(w.distinct(report["run"]) < report["published"] for w in watchers):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    report["published_wall"] = published
    report["feeds"] = [
        {"server": w.server.name, "seen": w.distinct(report["run"]), "doubled": w.doubled(report["run"])}
        for w in watchers
    ]
    return report


class FeedWatcher:
    """Counts the load's markers on one server's live feed (another process than the simulator reads)."""

    def __init__(self, server: Naboom, inst: Installation) -> None:
        self.server, self.inst = server, inst
        self.ready = asyncio.Event()
        self.seen: Counter[str] = Counter()

    async def run(self) -> None:
        from naboom_sim.load import marker_of

        assert self.server.base_url is not None
        async with sse_stream(self.server.base_url, self.inst.token, self.inst.rig.region) as events:
            self.ready.set()
            async for event in events:
                marker = marker_of(event.type, event.data)
                if marker is not None:
                    self.seen[marker] += 1

    def distinct(self, run: str) -> int:
        return sum(1 for marker in self.seen if marker.startswith(f"load {run}-"))

    def doubled(self, run: str) -> int:
        return sum(n - 1 for marker, n in self.seen.items() if marker.startswith(f"load {run}-"))


def commit_times(inst: Installation, run: str) -> dict[int, list[float]]:
    """``{sequence: [created_at as Unix seconds, …]}`` of the incidents a load run opened (one each, if right)."""
    assert inst.rig.db is not None
    marker = f"load {run}-"
    out = inst.rig.db.sql(
        f"SELECT message, extract(epoch FROM created_at) FROM incident WHERE message LIKE '{marker}%'"
    )
    rows: dict[int, list[float]] = {}
    for line in out.splitlines():
        message, _, stamp = line.rpartition("|")
        rows.setdefault(int(message[len(marker) :]), []).append(float(stamp))
    return rows


def judge(inst: Installation, report: dict[str, Any]) -> dict[str, Any]:
    """Compare a run's publishes with the table and the feed: throughput, latencies, lost, doubled."""
    published: list[float] = report["published_wall"]
    rows = commit_times(inst, report["run"])
    stored = sum(len(stamps) for stamps in rows.values())
    missing_rows = sum(1 for seq in range(len(published)) if seq not in rows)
    commit_ms = [(rows[seq][0] - t) * 1000 for seq, t in enumerate(published) if seq in rows]
    last_commit = max((stamps[0] for stamps in rows.values()), default=published[0] if published else 0)
    elapsed = last_commit - published[0] if published else 0
    return {
        "published": report["published"],
        "publish_per_s": round(report["published"] / report["duration_s"], 1)
        if report["duration_s"]
        else None,
        "accepted_per_s": round(len(rows) / elapsed, 1) if elapsed > 0 else None,
        "stored": stored,
        "latency_ms": report["latency_ms"],
        "commit_latency_ms": summary(commit_ms),
        "sse_seen": report["accepted"],
        "feeds": report["feeds"] or None,
        # Lost: no row, or a row operators never saw on a feed.
        "lost": max(
            [missing_rows, report["lost"]] + [report["published"] - f["seen"] for f in report["feeds"]]
        ),
        "doubled": (stored - len(rows)) + report["doubled"] + sum(f["doubled"] for f in report["feeds"]),
    }


ACK_FILTER = "panic/ack/#"
PROBE_TOPIC = "panic/ack/bench-probe"


class AckWatcher:
    """``mosquitto_sub -q 1`` on every device's ack topic (``panic/ack/#``), as the devices would be.

    Each line it writes is the arrival time (Unix seconds, nanoseconds) and the ack. It starts
    before the load and is ready once a probe it was sent shows up in its output. A device
    sends its SOS again after 10 s without an ack.
    """

    def __init__(self, rig: Rig) -> None:
        assert rig.mqtt_port is not None
        self.port = rig.mqtt_port
        self.path = rig.work / "acks.txt"
        self._out = self.path.open("wb")
        self.proc = subprocess.Popen(
            # Line-buffered: each ack is in the file as soon as it arrives.
            ["stdbuf", "-oL", "mosquitto_sub", "-h", HOST, "-p", str(self.port), "-q", "1",
             "-i", f"bench-acks-{rig.run}", "-t", ACK_FILTER, "-F", "%U %p"],
            stdout=self._out, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        rig.teardown.push("ack watcher", self.stop)
        wait_until(self._probed, 30, "the ack watcher to subscribe", every=0.2)

    def _probed(self) -> bool:
        subprocess.run(
            ["mosquitto_pub", "-h", HOST, "-p", str(self.port), "-q", "1", "-t", PROBE_TOPIC, "-m", "{}"],
            check=True, timeout=10,
        )  # fmt: skip
        return b" {}\n" in self.path.read_bytes()

    def acks(self) -> list[tuple[float, dict[str, Any]]]:
        """``(arrival, ack)`` of every device ack written so far (the probes left out)."""
        found = []
        complete, _, _ = self.path.read_bytes().rpartition(b"\n")
        for line in complete.splitlines():
            stamp, _, body = line.partition(b" ")
            if body != b"{}":
                found.append((float(stamp), json.loads(body)))
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self._out.close()


def incident_sequences(inst: Installation, run: str) -> dict[str, int]:
    """``{incident id: sequence}`` of the incidents a load run opened."""
    assert inst.rig.db is not None
    marker = f"load {run}-"
    out = inst.rig.db.sql(f"SELECT id, message FROM incident WHERE message LIKE '{marker}%'")
    return {
        incident_id: int(message[len(marker) :])
        for incident_id, _, message in (line.partition("|") for line in out.splitlines())
    }


def device_acks(inst: Installation, watcher: AckWatcher, report: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Each SOS's ``received`` ack as a device subscribed to its ack topic gets it, once all are in.

    ``acks``: acks of this run's incidents; ``missing``: incidents of the run with none;
    ``acked_per_s``: the run's acknowledged SOS per second, first publish to last ack;
    ``ack_ms``: the SOS's publish → its ack at the subscriber ``{p50, p99, max}``;
    ``out_after_load_s``: after the load, the wait for the last of them.
    """
    sequences = incident_sequences(inst, report["run"])
    published: list[float] = report["published_wall"]

    def of_run() -> list[tuple[float, dict[str, Any]]]:
        return [(t, a) for t, a in watcher.acks() if a.get("incident_id") in sequences]

    began = time.monotonic()
    while True:
        got = of_run()
        heard = {a["incident_id"] for _, a in got}
        if len(heard) >= len(sequences) or time.monotonic() - began > timeout:
            break
        time.sleep(0.2)
    waited = time.monotonic() - began
    ack_ms = [
        (t - published[sequences[a["incident_id"]]]) * 1000
        for t, a in got
        if sequences[a["incident_id"]] < len(published)
    ]
    last = max((t for t, _ in got), default=0.0)
    return {
        "acks": len(got),
        "missing": len(set(sequences) - heard),
        # What the devices see: SOS acknowledged per second, from the first publish to the last ack.
        "acked_per_s": round(len(heard) / (last - published[0]), 1) if got and published and last > published[0] else None,
        "ack_ms": summary(ack_ms, (50, 99)),
        "out_after_load_s": round(waited, 2),
    }


# --- ceilings ------------------------------------------------------------------------------------------


async def count_messages(
    port: int, client_id: str, count: int, seconds: float, mode: str
) -> dict[str, float]:
    """A bare aiomqtt subscriber (persistent session, QoS 1) that only counts.

    ``prepare`` creates the session and leaves (messages queue for it); ``live`` subscribes,
    prints ``ready`` and counts ``count`` messages; ``drain`` reconnects and counts the queue.
    """
    import aiomqtt

    client = aiomqtt.Client(
        HOST, port, identifier=client_id, protocol=aiomqtt.ProtocolVersion.V311, clean_session=False
    )
    t_connect = time.time()
    async with client:
        if mode in ("prepare", "live"):
            await client.subscribe(TOPIC_FILTER, qos=1)
        if mode == "prepare":
            return {}
        if mode == "live":
            print("ready", flush=True)
        seen, first, last = 0, 0.0, 0.0
        async with asyncio.timeout(seconds):
            async for _ in client.messages:
                last = time.time()
                first = first or last
                seen += 1
                if seen == count:
                    break
    return {"t_connect": t_connect, "first": first, "last": last, "count": seen}


def mosquitto_sub(port: int, client_id: str, count: int | None, timeout: float) -> float:
    """``mosquitto_sub -q 1`` on a persistent session: prepare it (``count`` None) or time draining ``count``."""
    cmd = ["mosquitto_sub", "-h", HOST, "-p", str(port), "-q", "1", "-c", "-i", client_id, "-t", TOPIC_FILTER]
    cmd += ["-E"] if count is None else ["-C", str(count)]
    t0 = time.monotonic()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, timeout=timeout)
    return time.monotonic() - t0


class Ceilings:
    """The bare subscribers of one run: sessions prepared before the load, drained after it."""

    def __init__(self, inst: Installation, args: argparse.Namespace, live: bool) -> None:
        self.inst, self.args, self.live = inst, args, live
        run = inst.rig.run
        self.drain_id, self.sub_id, self.live_id = f"ceil-drain-{run}", f"ceil-sub-{run}", f"ceil-live-{run}"
        self._live: subprocess.Popen[str] | None = None
        self.results: dict[str, Any] = {}

    @property
    def port(self) -> int:
        assert self.inst.rig.mqtt_port is not None
        return self.inst.rig.mqtt_port

    def prepare(self, expected: int) -> None:
        """Sessions that collect everything from now on; the live counter, if wanted, subscribed."""
        asyncio.run(count_messages(self.port, self.drain_id, 0, 30, "prepare"))
        mosquitto_sub(self.port, self.sub_id, None, 30)
        if self.live:
            self._live = subprocess.Popen(
                [sys.executable, __file__, "--role", "counter", "--port", str(self.port), "--client-id",
                 self.live_id, "--count", str(expected), "--timeout", str(self.args.timeout)],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            self.inst.rig.teardown.push("live counter", self._live.kill)
            assert self._live.stdout is not None
            if self._live.stdout.readline().strip() != "ready":
                raise RuntimeError("the live ceiling counter did not start")

    def finish(self, expected: int, first_publish: float) -> dict[str, Any]:
        """Collect the live count; drain both sessions one after the other, nothing else running."""
        out: dict[str, Any] = {}
        if self._live is not None:
            stdout, _ = self._live.communicate(timeout=self.args.timeout)
            live = json.loads(stdout.strip().splitlines()[-1])
            if live["count"] != expected:
                raise RuntimeError(f"the live ceiling counter got {live['count']} of {expected}")
            out["aiomqtt_live_per_s"] = round(expected / (live["last"] - first_publish), 1)
        drain = asyncio.run(count_messages(self.port, self.drain_id, expected, self.args.timeout, "drain"))
        if drain["count"] != expected:
            raise RuntimeError(f"the aiomqtt drain counter got {drain['count']} of {expected}")
        out["aiomqtt_drain_per_s"] = round(expected / (drain["last"] - drain["t_connect"]), 1)
        seconds = mosquitto_sub(self.port, self.sub_id, expected, self.args.timeout)
        out["mosquitto_sub_drain_per_s"] = round(expected / seconds, 1)
        return out


# --- acknowledged? ----------------------------------------------------------------------------------------


def unacked(port: int, client_ids: list[str], timeout: float = 30) -> dict[str, int]:
    """Messages the broker still holds for each session (in flight or queued), by client id.

    Call with the sessions' owners gone. We take over every session at once (each must be
    present: otherwise there is nothing to prove) and publish sentinels until each session has
    received one; what a session hands over before its first sentinel was delivered to the
    ingest and never acknowledged, or still queued for it: the broker resends unacknowledged
    in-flight messages first and keeps a session's queue in order. All at once because a
    ``$share`` group hands each sentinel to one member only.
    """
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    prefix = f"sentinel-{uuid.uuid4().hex}".encode()
    before = {cid: 0 for cid in client_ids}
    present: dict[str, bool] = {}
    reached: set[str] = set()

    def taker(cid: str) -> paho.Client:
        def on_connect(_c: paho.Client, _u: Any, flags: Any, _rc: Any, _p: Any = None) -> None:
            present[cid] = bool(flags.session_present)

        def on_message(_c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
            if bytes(message.payload).startswith(prefix):
                reached.add(cid)
            elif cid not in reached:
                before[cid] += 1

        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=cid, clean_session=False)
        client.on_connect, client.on_message = on_connect, on_message
        client.connect(HOST, port)
        client.loop_start()
        return client

    takers = [taker(cid) for cid in client_ids]
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sentinel-{uuid.uuid4().hex[:8]}")
    try:
        wait_until(lambda: len(present) == len(client_ids), timeout, "taking over the ingest sessions")
        if not all(present.values()):
            raise RuntimeError(f"the broker lost sessions {[c for c, p in present.items() if not p]}")
        pub.connect(HOST, port)
        pub.loop_start()
        n = 0

        def all_reached() -> bool:
            nonlocal n
            n += 1
            pub.publish("panic/ingest/bench-sentinel", prefix + b"%d" % n, qos=1)
            return len(reached) == len(client_ids)

        wait_until(all_reached, timeout, "a sentinel to reach every session", every=0.05)
    finally:
        pub.loop_stop()
        pub.disconnect()
        for client in takers:
            client.loop_stop()
            client.disconnect()
    return before


def unacked_after_kill(inst: Installation) -> int:
    """Kill every ``naboom serve`` (nothing more gets acknowledged) and count what their sessions hold."""
    assert inst.rig.mqtt_port is not None
    for server in inst.servers:
        server.kill()
    held = unacked(inst.rig.mqtt_port, inst.client_ids)
    if any(held.values()):
        log(f"unacknowledged or queued for the ingest: {held}")
    return sum(held.values())


def batch_sizes(servers: list[Naboom]) -> dict[str, Any] | None:
    """Mean size and number of the ingest's batches over ``servers``, from their Prometheus histograms."""
    import httpx

    total = count = 0.0
    for server in servers:
        try:
            text = httpx.get(f"{server.base_url}/metrics", timeout=5).text
        except httpx.HTTPError:
            return None
        for line in text.splitlines():
            if line.startswith("naboom_ingest_batch_size_sum"):
                total += float(line.split()[-1])
            elif line.startswith("naboom_ingest_batch_size_count"):
                count += float(line.split()[-1])
    return {"mean": round(total / count, 1), "batches": int(count)} if count else None


# --- the modes -----------------------------------------------------------------------------------------------


def plan_of(args: argparse.Namespace) -> list[tuple[float, float]]:
    """``[(rate, duration), …]``: one run for (a) and (b), one per rate for (c)."""
    if args.sweep:
        return [(float(r), args.duration) for r in args.sweep.split(",") if r.strip()]
    if args.rate:
        return [(args.rate, args.duration)]
    # (a): everything due at once; the simulator publishes as fast as it can.
    return [(args.count * 1000.0, 1 / 1000)]


def measure(inst: Installation, args: argparse.Namespace) -> dict[str, Any]:
    """Run the mode's load(s) with the ceilings alongside; the JSON line's measurements."""
    plan = plan_of(args)
    expected = sum(round(rate * duration) for rate, duration in plan)
    # Live, the bare subscriber only keeps pace with the publisher: a ceiling only when that is flat out.
    ceilings = Ceilings(inst, args, live=args.live_ceiling and not (args.rate or args.sweep))
    ceilings.prepare(expected)
    points, first_publish = [], 0.0
    acks = AckWatcher(inst.rig)
    for rate, duration in plan:
        paced = f" at {rate:g}/s" if args.rate or args.sweep else " flat out"
        log(f"load: {round(rate * duration)} SOS{paced}")
        cpu = [cpu_seconds(server.pid) for server in inst.servers]
        machine = machine_cpu()
        wall = time.monotonic()
        report = asyncio.run(load_run(inst, args, rate, duration, other_feeds=len(inst.servers) - 1))
        wall = time.monotonic() - wall
        used = [cpu_seconds(s.pid) - c for s, c in zip(inst.servers, cpu, strict=True)]
        busy = [round(100 * u / wall) for u in used]
        machine_busy = [b - a for a, b in zip(machine, machine_cpu(), strict=True)]
        first_publish = first_publish or (report["published_wall"] or [time.time()])[0]
        point = judge(inst, report)
        # CPU of each ``naboom serve`` over the load (100 = one core busy throughout).
        point["serve_cpu_percent"] = busy
        # CPU the servers spent per SOS: comparable between runs on a busy machine, unlike rates.
        point["serve_cpu_ms_per_sos"] = round(1000 * sum(used) / max(1, report["published"]), 3)
        # The whole machine over the same time (100 = every core busy): other work shares it.
        point["machine_cpu_percent"] = (
            round(100 * machine_busy[0] / machine_busy[1]) if machine_busy[1] else None
        )
        # After the CPU figures: any work left over after the load is not in them.
        point["device_acks"] = device_acks(inst, acks, report, args.timeout)
        if args.rate or args.sweep:
            point = {"offered_per_s": rate, **point}
        log(f"  {json.dumps(point)}")
        points.append(point)
    batches = batch_sizes(inst.servers)
    left = unacked_after_kill(inst)
    found = ceilings.finish(expected, first_publish)
    # Every SOS committed must also have reached its device as an ack.
    acks_missing = sum(p["device_acks"]["missing"] for p in points)
    result: dict[str, Any] = {
        "lost": sum(p["lost"] for p in points),
        "doubled": sum(p["doubled"] for p in points),
        "unacked": left,
        "acks_missing": acks_missing,
        "ok": left == 0 and acks_missing == 0,
        "ceilings": found,
        "ingest_batches": batches,
        "devices": args.devices,
        "connections": args.connections,
        "mosquitto_max_inflight": args.inflight,
        "batch_size": args.batch or "default (2000)",
    }
    if args.sweep:
        return {"variant": f"sweep {args.sweep} x {args.duration:g}s", **result, "points": points}
    (point,) = points
    if args.rate:
        return {
            "variant": f"rate={args.rate:g}",
            "measured": {
                "what": "publish→SSE p99",
                "value": (point["latency_ms"] or {}).get("p99"),
                "unit": "ms",
            },
            "target": {"text": "p99 ≤ 50 ms at 1,000 SOS/s", "measured_max": 50}
            if args.rate == 1000
            else None,
            **point,
            **result,
        }
    top = max(found.get("aiomqtt_live_per_s", 0.0), found["aiomqtt_drain_per_s"])
    accepted = point["accepted_per_s"]
    return {
        "variant": f"n={expected}",
        "measured": {"what": "accepted SOS/s (committed, acknowledged)", "value": accepted, "unit": "SOS/s"},
        "ceiling": {"what": "bare aiomqtt subscriber (best of live, drain)", "value": top, "unit": "msg/s"},
        "ratio": round(accepted / top, 2) if accepted and top else None,
        "target": {"text": "≥ 0.5 x ceiling and ≥ 5,000 SOS/s", "ratio_min": 0.5, "measured_min": 5000},
        **point,
        **result,
    }


def body(args: argparse.Namespace) -> Callable[[Rig], dict[str, Any]]:
    """The benchmark for :func:`rig.run_bench`: one installation, the mode's measurements."""

    def run(rig: Rig) -> dict[str, Any]:
        return measure(install(rig, args), args)

    return run


def add_load_args(parser: argparse.ArgumentParser) -> None:
    """The load's options (shared with ``bench/scaleout.py``), beside :func:`rig.bench_parser`'s."""
    parser.add_argument(
        "--count", type=int, default=30_000, help="(a) SOS to publish flat out (default 30000)"
    )
    parser.add_argument("--rate", type=float, default=0, help="(b) offered SOS per second")
    parser.add_argument("--duration", type=float, default=10, help="(b, c) seconds per rate (default 10)")
    parser.add_argument("--sweep", default="", help="(c) comma-separated offered rates")
    parser.add_argument("--devices", type=int, default=20, help="devices the SOS come from (default 20)")
    parser.add_argument("--connections", type=int, default=4, help="publisher connections (default 4)")
    parser.add_argument("--inflight", type=int, default=4000, help="Mosquitto max_inflight_messages")
    parser.add_argument(
        "--batch", type=int, default=0, help="NABOOM_MQTT_BATCH_SIZE (default: the product's)"
    )
    parser.add_argument(
        "--live-ceiling", action="store_true", help="(a) a bare aiomqtt counter beside the ingest during the load"
    )


def apply_quick(args: argparse.Namespace) -> None:
    """``--quick``: a few seconds of each part."""
    if args.quick:
        args.count, args.duration, args.devices = (
            min(args.count, 2000),
            min(args.duration, 2),
            min(args.devices, 5),
        )
        if args.sweep:
            args.sweep = ",".join(args.sweep.split(",")[:2])


def main() -> None:
    parser = bench_parser(__doc__)
    add_load_args(parser)
    # Internal: the live ceiling counter runs as a child process of this file.
    parser.add_argument("--role", choices=["main", "counter"], default="main", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client-id", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "counter":
        result = asyncio.run(count_messages(args.port, args.client_id, args.count, args.timeout, "live"))
        print(json.dumps(result), flush=True)
        return
    apply_quick(args)
    sys.exit(run_bench("ingest-sweep" if args.sweep else "ingest", args, body(args)))


if __name__ == "__main__":
    main()
