#!/usr/bin/env python
"""Duplicate storm and a crash: 30 % exact re-publishes, ``naboom serve`` SIGKILLed mid-run; one JSON line.

    .venv/bin/python bench/dupstorm.py            # 2,000 publishes/s for 20 s, killed at 8 s, 2 s down
    .venv/bin/python bench/dupstorm.py --quick    # 500/s for 4 s

A paced publisher (the device simulator's signed SOS and clients, ``bench/publisher.py``) sends
``rate x duration`` messages; 30 % are byte-for-byte re-publishes of one of the last 1,000
distinct SOS, as devices retrying after a lost acknowledgement do. At ``--kill-at`` seconds the
server gets SIGKILL (no grace: whatever it held uncommitted or unacknowledged stays in its
persistent broker session), and ``--down`` seconds later the same command starts again. Checks:

* every distinct SOS has exactly one incident (``lost``, ``doubled``, from the table);
* nothing is left unacknowledged (``unacked``): once all is in, ``naboom serve`` is killed and
  the sentinel probe of ``bench/ingest.py`` counts what the broker still holds for its session;
* every distinct SOS reached its device as an ack (``acks_missing``, of ``acks_heard`` acks
  that ``mosquitto_sub`` on ``panic/ack/#`` received, re-publishes' and redeliveries' included);
* ``duplicates_counted`` (``naboom_ingest_messages_total{outcome="duplicate"}`` scraped from the
  first life right before its SIGKILL, plus the second life's final count) matches the
  re-publishes within ``duplicates_tolerance`` (two ingest batches). It cannot be exact: the
  batch being decided at the kill may be missed by the scrape, or counted and then, uncommitted,
  decided again after the restart. Every other message is decided once: the rest of what the
  broker had handed over was neither decided nor acknowledged, and comes back whole.

Recovery: ``downtime_s`` (kill → the new process healthy), ``backlog_at_restart`` (distinct
SOS published but not committed when it came back), and ``recover_s`` (restart → the lag of
committed behind published back under the pre-kill p99 lag, or 0.1 s of load if larger).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from broker import Publisher, count_markers, dup_schedule
from ingest import AckWatcher, unacked
from rig import Naboom, Rig, bench_parser, log, percentile, run_bench, wait_until

DUP_FRACTION = 0.3
SAMPLE_EVERY = 0.05
SCRAPE_EVERY = 0.1
METRIC = re.compile(r'^naboom_ingest_messages_total\{outcome="(\w+)",reason="([^"]*)"\} ([0-9.e+]+)$', re.M)


def scrape_counts(text: str) -> dict[str, int]:
    """Accepted, duplicate and rejected (all reasons) from one /metrics scrape."""
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    for outcome, _reason, value in METRIC.findall(text):
        counts[outcome] = counts.get(outcome, 0) + int(float(value))
    return counts


@dataclass
class Watch:
    """What the bench saw while the storm ran: committed counts and each life's last scrape."""

    sent: int = 0  # publishes so far (written by the publisher thread)
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, sent, committed)
    scrapes: dict[int, tuple[float, dict[str, int]]] = field(default_factory=dict)  # life -> last
    life: int = 1
    server: Naboom | None = None


async def sample_committed(pg: Any, watch: Watch) -> None:
    """The committed incident count every SAMPLE_EVERY seconds (fresh database: all are ours)."""
    while True:
        sent = watch.sent
        committed = await pg.fetchval("SELECT count(*) FROM incident")
        watch.samples.append((time.monotonic(), sent, int(committed)))
        await asyncio.sleep(SAMPLE_EVERY)


async def scrape_metrics(watch: Watch) -> None:
    """Keep each life's newest ingest counters; a dead or starting server is skipped."""
    import httpx

    async with httpx.AsyncClient(timeout=1) as client:
        while True:
            server, life = watch.server, watch.life
            if server is not None and server.proc.poll() is None:
                with contextlib.suppress(httpx.HTTPError):
                    r = await client.get(f"{server.base_url}/metrics")
                    if r.status_code == 200 and watch.life == life:
                        watch.scrapes[life] = (time.monotonic(), scrape_counts(r.text))
            await asyncio.sleep(SCRAPE_EVERY)


async def crash(server: Naboom, watch: Watch) -> float:
    """Scrape the first life's counters one last time, then SIGKILL at once; returns the kill time.

    Killing right after the scrape leaves at most the batch being decided unseen.
    """
    import httpx

    watch.server, watch.life = None, 2
    async with httpx.AsyncClient(timeout=2) as client:
        r = await client.get(f"{server.base_url}/metrics")
        server.proc.kill()
        t_kill = time.monotonic()
    r.raise_for_status()
    watch.scrapes[1] = (t_kill, scrape_counts(r.text))
    await asyncio.to_thread(server.proc.wait)
    return t_kill


def body(rig: Rig) -> dict[str, Any]:
    """Build the installation, storm it, count."""
    from naboom_sim.credentials import Credentials
    from naboom_sim.load import presign

    a = rig.args
    if a.quick:
        a.rate, a.duration, a.kill_at, a.down = 500.0, 4.0, 1.5, 0.5
    total = round(a.rate * a.duration)
    distinct = round(total * (1 - DUP_FRACTION))
    order = dup_schedule(distinct, DUP_FRACTION, seed=a.seed)
    rig.mosquitto(inflight=a.inflight)
    acks = AckWatcher(rig)
    db = rig.database()
    env = rig.env()
    rig.cli(env, "migrate")
    creds = [Credentials.from_dict(rig.device(env)) for _ in range(a.devices)]
    items = presign(creds, distinct, rig.run)
    server = rig.serve(env)
    log(f"{len(order)} publishes at {a.rate:g}/s: {distinct} distinct, {len(order) - distinct} re-publishes")
    result = asyncio.run(storm(rig, env, server, creds, items, order))
    result.update(
        quick=a.quick,
        offered_per_s=a.rate,
        duration_s=a.duration,
        kill_at_s=a.kill_at,
        mosquitto_max_inflight=a.inflight,
    )
    missing, doubled = count_markers(
        db.sql("SELECT message, count(*) FROM incident GROUP BY message"), rig.run, distinct
    )
    result.update(lost=missing, doubled=doubled)
    # Every distinct SOS, the ones the crash caught included, reached its device as an ack.
    nonces = {f"{rig.run}-{seq}" for seq in range(distinct)}

    def unheard() -> set[str]:
        return nonces - {str(ack.get("nonce")) for _, ack in acks.acks()}

    with contextlib.suppress(RuntimeError):
        wait_until(lambda: not unheard(), 10, "every SOS's ack", every=0.2)
    result.update(acks_heard=len(acks.acks()), acks_missing=len(unheard()))
    if result["acks_missing"]:
        result["ok"] = False
        result["error"] = f"{result['acks_missing']} SOS never acknowledged to their device"
    return result


async def storm(
    rig: Rig, env: dict[str, str], server: Naboom, creds: list[Any], items: list[Any], order: list[int]
) -> dict[str, Any]:
    """Publish the schedule, kill and restart the server on time, wait until all is committed."""
    import asyncpg

    from naboom.settings import Settings

    a = rig.args
    assert rig.db is not None and rig.mqtt_port is not None
    distinct = len(items)
    distinct_after = [0, *accumulate((i + 1 for i in order), max)]  # distinct SOS among the first k publishes
    watch = Watch(server=server)
    pg = await asyncpg.connect(rig.db.url("postgresql"))
    tasks = [asyncio.create_task(sample_committed(pg, watch)), asyncio.create_task(scrape_metrics(watch))]
    try:

        def progress(n: int) -> None:
            watch.sent = n

        with Publisher(rig.mqtt_port, creds, rig.run) as pub:
            publishing = asyncio.create_task(asyncio.to_thread(pub.publish, items, order, a.rate, progress))
            t0 = time.monotonic()
            await asyncio.sleep(a.kill_at)
            t_kill = await crash(server, watch)
            log(f"SIGKILLed serve (pid {server.pid}) after {watch.sent} publishes")
            await asyncio.sleep(a.down)
            t_restart = time.monotonic()
            server = await asyncio.to_thread(rig.serve, env, "serve-2")
            t_healthy = time.monotonic()
            watch.server = server
            published = await publishing
        if published.acked != published.sent:
            raise RuntimeError(f"the broker acknowledged {published.acked} of {published.sent} publishes")
        log(
            f"published {published.sent} in {published.t_sent - published.t_start:.1f}s; waiting for the commits"
        )

        deadline = time.monotonic() + a.timeout
        while not watch.samples or watch.samples[-1][2] < distinct:
            server.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out: {watch.samples[-1][2]} of {distinct} committed")
            await asyncio.sleep(0.1)
        t_all = watch.samples[-1][0]
        # Trailing re-publishes may still be on their way: wait until the counters stand still.
        stable_since, last = time.monotonic(), None
        while time.monotonic() - stable_since < 1.0 and time.monotonic() < deadline:
            await asyncio.sleep(SCRAPE_EVERY)
            now = watch.scrapes.get(2, (0.0, None))[1]
            if now != last:
                stable_since, last = time.monotonic(), now
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pg.close()

    # Counters stood still for a second: nothing is on its way. Kill, so nothing more gets
    # acknowledged, and see what the broker still holds for the ingest.
    server.kill()
    left = (await asyncio.to_thread(unacked, rig.mqtt_port, [env["NABOOM_MQTT_CLIENT_ID"]]))[
        env["NABOOM_MQTT_CLIENT_ID"]
    ]

    # Lag of committed behind published, before the kill and after the restart.
    def lag(sample: tuple[float, int, int]) -> int:
        return distinct_after[sample[1]] - sample[2]

    before = sorted(float(lag(s)) for s in watch.samples if t0 + 1 <= s[0] < t_kill)
    threshold = max(int(percentile(before, 99)) if before else 0, int(a.rate * 0.1))
    after = [s for s in watch.samples if s[0] >= t_healthy]
    at_restart = next((lag(s) for s in after), 0)
    recovered = next((s[0] for s in after if lag(s) <= threshold), t_all)

    life1, life2 = watch.scrapes[1][1], watch.scrapes[2][1]
    republished = len(order) - distinct
    counted = life1["duplicate"] + life2["duplicate"]
    # The ingest decides one batch at a time: the kill leaves at most that batch unseen by the
    # last scrape, or counted but uncommitted (decided again after the restart).
    tolerance = 2 * Settings.from_env(env).mqtt_batch_size
    dup_ok = abs(counted - republished) <= tolerance
    result = {
        "publishes": len(order),
        "distinct": distinct,
        "republished": republished,
        "duplicates_counted": counted,
        "duplicates_by_life": [life1["duplicate"], life2["duplicate"]],
        "accepted_by_life": [life1["accepted"], life2["accepted"]],
        "rejected": life1["rejected"] + life2["rejected"],
        "duplicates_tolerance": tolerance,
        "duplicates_match": dup_ok,
        "unacked": left,
        "downtime_s": round(t_healthy - t_kill, 2),
        "restart_to_healthy_s": round(t_healthy - t_restart, 2),
        "backlog_at_restart": at_restart,
        "recover_s": round(recovered - t_healthy, 2),
        "lag_before_kill_p99": threshold if before else None,
        "all_committed_after_s": round(t_all - published.t_start, 2),
        "measured": {"what": "restart → caught up", "value": round(recovered - t_restart, 2), "unit": "s"},
        "target": {"text": "zero lost, zero doubled, duplicates counted"},
    }
    result["ok"] = left == 0
    if not dup_ok:
        result["ok"] = False
        result["error"] = f"{counted} duplicates counted for {republished} re-publishes"
    if result["rejected"]:
        result["ok"] = False
        result["error"] = f"{result['rejected']} message(s) rejected"
    return result


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--rate", type=float, default=2000, help="publishes per second (default 2000)")
    parser.add_argument("--duration", type=float, default=20, help="seconds of publishing (default 20)")
    parser.add_argument("--kill-at", type=float, default=8, help="SIGKILL serve this many seconds in")
    parser.add_argument("--down", type=float, default=2, help="seconds before it starts again")
    parser.add_argument("--devices", type=int, default=4, help="devices the SOS come from (default 4)")
    parser.add_argument("--inflight", type=int, default=4000, help="Mosquitto max_inflight_messages")
    parser.add_argument("--seed", type=int, default=8, help="seed of the re-publish schedule")
    args = parser.parse_args()
    sys.exit(run_bench("dupstorm", args, body))


if __name__ == "__main__":
    main()
