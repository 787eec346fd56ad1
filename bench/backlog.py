#!/usr/bin/env python
"""Backlog drain: 50,000 signed SOS queued while the ingest was down, then the time to take them all in.

    .venv/bin/python bench/backlog.py             # 50,000 queued
    .venv/bin/python bench/backlog.py --quick     # 5,000 queued

``naboom serve`` starts once (so its persistent session and subscription exist in the broker) and
stops again. With it down, the device simulator's clients publish N signed SOS flat out (every
PUBACK in: the broker holds them all, ``max_queued_messages`` raised) and two bare subscribers'
sessions collect the same N. Then ``naboom serve`` starts and the run waits until N incidents
are committed. Measured in the same run:

* ``drain_s``: the start of the process → all N committed (what an operator waits after a
  restart); ``ingest_drain_s``: the first batch received → all N committed, and
  ``drain_per_s`` = N ÷ that (the headline ``measured``).
* ``ceiling``: the bare aiomqtt subscriber of ``bench/ingest.py`` draining its session of the same
  N (connect → the Nth message), with nothing else running; ``ceilings`` adds ``mosquitto_sub``'s.
* ``unacked``: what the broker still holds for the ingest's session after ``naboom serve`` is
  killed once the table is complete (the sentinel probe of ``bench/ingest.py``); must be 0.
* ``lost`` / ``doubled``: SOS without their one incident / extra incidents, from the table.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from broker import Publisher, count_markers
from ingest import count_messages, mosquitto_sub, unacked
from rig import Naboom, Rig, bench_parser, log, run_bench

POLL_EVERY = 0.05


def body(rig: Rig) -> dict[str, Any]:
    """Queue N while the ingest is down, start it, time the drain; then the ceilings on the same N."""
    from naboom_sim.credentials import Credentials
    from naboom_sim.load import presign

    a = rig.args
    count = 5000 if a.quick else a.count
    port = rig.mosquitto(inflight=a.inflight, queued=count + 10_000)
    db = rig.database()
    env = rig.env()
    rig.cli(env, "migrate")
    creds = [Credentials.from_dict(rig.device(env)) for _ in range(a.devices)]
    rig.serve(env, name="serve-1").stop()
    client_id = env["NABOOM_MQTT_CLIENT_ID"]
    aiomqtt_id, sub_id = f"ceil-drain-{rig.run}", f"ceil-sub-{rig.run}"
    asyncio.run(count_messages(port, aiomqtt_id, 0, 30, "prepare"))
    mosquitto_sub(port, sub_id, None, 30)

    items = presign(creds, count, rig.run)
    log(f"ingest down; publishing {count} SOS flat out")
    with Publisher(port, creds, rig.run) as pub:
        published = pub.publish(items, ack_timeout=a.timeout)
    if published.acked != count:
        raise RuntimeError(f"the broker acknowledged {published.acked} of {count} publishes")
    log(f"{count} queued in {published.t_acked - published.t_start:.1f}s; starting naboom serve")

    t_spawn, t_all, server = asyncio.run(drain(rig, env, count))
    first = float(db.sql("SELECT extract(epoch FROM min(received_at)) FROM incident"))
    # received_at is wall-clock; t_all is monotonic: compare on one clock.
    t_first = first - time.time() + time.monotonic()
    time.sleep(0.5)  # the last batch's acknowledgements leave just after its commit
    server.kill()
    left = unacked(port, [client_id])[client_id]
    lost, doubled = count_markers(
        db.sql("SELECT message, count(*) FROM incident GROUP BY message"), rig.run, count
    )

    log("draining the bare subscribers' sessions, nothing else running")
    bare = asyncio.run(count_messages(port, aiomqtt_id, count, a.timeout, "drain"))
    if bare["count"] != count:
        raise RuntimeError(f"the aiomqtt drain counter got {bare['count']} of {count}")
    ceiling = round(count / (bare["last"] - bare["t_connect"]), 1)
    sub_per_s = round(count / mosquitto_sub(port, sub_id, count, a.timeout), 1)
    measured = round(count / (t_all - t_first), 1)
    return {
        "lost": lost,
        "doubled": doubled,
        "ok": left == 0,
        "quick": a.quick,
        "variant": f"n={count}",
        "queued": count,
        "queue_s": round(published.t_acked - published.t_start, 2),
        "drain_s": round(t_all - t_spawn, 2),
        "ingest_drain_s": round(t_all - t_first, 2),
        "drain_per_s": measured,
        "unacked": left,
        "measured": {"what": "backlog drained, committed SOS/s", "value": measured, "unit": "SOS/s"},
        "ceiling": {
            "what": "bare aiomqtt subscriber draining the same backlog",
            "value": ceiling,
            "unit": "msg/s",
        },
        "ratio": round(measured / ceiling, 2),
        "target": {"text": "≥ 0.5 x bare aiomqtt drain", "ratio_min": 0.5},
        "ceilings": {"aiomqtt_drain_per_s": ceiling, "mosquitto_sub_drain_per_s": sub_per_s},
        "mosquitto_max_inflight": a.inflight,
    }


async def drain(rig: Rig, env: dict[str, str], count: int) -> tuple[float, float, Naboom]:
    """Start ``naboom serve`` and poll the table until ``count`` incidents are in: (spawn, done, server)."""
    import asyncpg

    assert rig.db is not None
    pg = await asyncpg.connect(rig.db.url("postgresql"))
    try:
        t_spawn = time.monotonic()
        starting = asyncio.create_task(asyncio.to_thread(rig.serve, env, "serve-2", rig.args.timeout))
        deadline = t_spawn + rig.args.timeout
        last_log = t_spawn
        while (committed := int(await pg.fetchval("SELECT count(*) FROM incident"))) < count:
            now = time.monotonic()
            if starting.done():
                starting.result().check_alive()
            if now > deadline:
                raise RuntimeError(f"timed out: {committed} of {count} committed")
            if now - last_log > 2:
                log(f"{committed} of {count} committed")
                last_log = now
            await asyncio.sleep(POLL_EVERY)
        t_all = time.monotonic()
        return t_spawn, t_all, await starting
    finally:
        await pg.close()


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--count", type=int, default=50_000, help="SOS queued while down (default 50000)")
    parser.add_argument("--devices", type=int, default=4, help="devices the SOS come from (default 4)")
    parser.add_argument("--inflight", type=int, default=4000, help="Mosquitto max_inflight_messages")
    args = parser.parse_args()
    sys.exit(run_bench("backlog", args, body))


if __name__ == "__main__":
    main()
