#!/usr/bin/env python
"""TaskIQ SMS-task throughput: N SOS x K responders through ``naboom worker`` to a fake gateway; one JSON line.

    .venv/bin/python bench/tasks.py                        # 300 SOS x 3 responders, with 1 then 2 workers
    .venv/bin/python bench/tasks.py --workers 1 --rate 20  # one phase at a fixed offered load, for latency
    .venv/bin/python bench/tasks.py --quick                # 30 SOS per phase

Built fresh and removed after (``bench/rig.py``): a PostgreSQL database, a Mosquitto (``naboom
serve`` needs a broker; the SOS go over HTTP), Redis keys under the run's prefix, ``naboom
serve`` and the tests' fake Clickatell gateway (``tests/fakes/clickatell.py``, a real HTTP server
accepting everything) in a process of its own. One phase per ``--workers`` entry: W ``naboom
worker --queue critical`` processes read the Redis stream; through the admin API a region of its
own gets K responder contacts and a device; N SOS go to ``POST /panic/api/submit``
(``--concurrency`` at a time, or paced to ``--rate``); the phase ends when all N*K outbound
messages are ``sent`` and its workers stop. Measured per phase (``phases``):

* ``sms_per_s``: N*K ÷ (first submit → the last message's ``sent_at``): the headline, one table
  row per phase; the 2-worker row compares with twice the 1-worker rate (scaling).
* ``latency_ms``: incident ``received_at`` → message ``sent_at``; ``stages_ms`` splits it into
  ``received_to_queued`` (the alert task queues the K messages), ``queued_to_claimed`` (a
  ``send_sms`` task waits for a worker) and ``claimed_to_sent`` (the gateway call, the outcome).
* ``cpu_s``: CPU seconds per process, and the machine's busy fraction, during the phase.

``lost`` counts messages not accepted by the gateway, ``doubled`` those it accepted more than
once (by ``clientMessageId``); every SOS must have opened one incident with exactly K messages
and one attempt each (the gateway never fails). Otherwise the run fails (exit status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rig import ROOT, Naboom, Rig, bench_parser, log, run_bench, stop_process, summary, wait_until


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (``/proc/stat``)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


class CpuMeter:
    """CPU used by each named process, and by the machine, between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self._machine = machine_cpu()

    def stop(self) -> dict[str, Any]:
        used: dict[str, Any] = {
            name: round(cpu_seconds(pid) - self._start[name], 2) for name, pid in self.pids.items()
        }
        busy, total = machine_cpu()
        used["machine_busy_fraction"] = round(
            (busy - self._machine[0]) / max(total - self._machine[1], 1e-9), 2
        )
        return used


# --- child role: the fake gateway -----------------------------------------------------------------


def run_gateway() -> None:
    """The tests' fake Clickatell in a process of its own, so the bench's own work never stalls it.

    Prints ``{"url", "api_key"}``, then, once a line arrives on stdin (or stdin closes), every
    request it read as JSON, and exits.
    """
    sys.path.insert(0, str(ROOT))
    from tests.fakes.clickatell import FakeClickatell

    fake = FakeClickatell().start()
    print(json.dumps({"url": fake.url, "api_key": fake.api_key}), flush=True)
    sys.stdin.readline()
    requests = [
        {"to": r.to, "client_message_id": r.client_message_id, "action": r.action} for r in fake.received()
    ]
    print(json.dumps(requests), flush=True)
    # The workers may still hold keep-alive connections to it: leave without closing them one by one.
    os._exit(0)


def start_gateway(rig: Rig) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """The fake gateway's child process and its ``{"url", "api_key"}``."""
    gateway = subprocess.Popen(
        [sys.executable, __file__, "--role", "gateway"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    rig.teardown.push("gateway", lambda: stop_process(gateway))
    assert gateway.stdout is not None
    line = gateway.stdout.readline()
    if not line:
        raise RuntimeError(f"the fake gateway exited with {gateway.wait()}")
    log(f"fake Clickatell gateway pid {gateway.pid}")
    return gateway, json.loads(line)


def gateway_requests(gateway: subprocess.Popen[str]) -> list[dict[str, Any]]:
    """Every request the gateway read (it exits after answering)."""
    out, _ = gateway.communicate("report\n", timeout=60)
    if not out.strip():
        raise RuntimeError(f"the fake gateway exited with {gateway.returncode} without a report")
    return list(json.loads(out.strip().splitlines()[-1]))


# --- one phase ------------------------------------------------------------------------------------


@dataclass
class Phase:
    """One worker count's region, device and results."""

    workers: int
    region: str
    device: dict[str, Any]
    result: dict[str, Any] | None = None
    message_ids: set[str] | None = None


def provision(rig: Rig, base_url: str, admin_token: str, workers: int) -> Phase:
    """A region of the phase's own with K responder contacts, and a device in it."""
    import httpx

    region = f"{rig.region}-W{workers}"
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30
    ) as admin:

        def created(path: str, body: dict[str, Any]) -> Any:
            resp = admin.post(path, json=body)
            if resp.status_code != 201:
                raise RuntimeError(f"POST {path}: {resp.status_code} {resp.text}")
            return resp.json()

        created("/api/regions", {"code": region, "name": f"Bench {rig.run} W{workers}"})
        for n in range(rig.args.contacts):
            created(
                f"/api/regions/{region}/contacts",
                {"name": f"Responder {n}", "phone": f"+2782{workers}{n:06d}"},
            )
        device = created("/api/devices", {"pid": f"bench-{rig.run}-w{workers}", "region": region})
    return Phase(workers, region, device)


def start_workers(rig: Rig, env: dict[str, str], count: int) -> list[Naboom]:
    """``count`` times ``naboom worker --queue critical``, returned once each reads the queue."""
    workers = [rig.process(env, "worker", "--queue", "critical", name=f"worker-{n}") for n in range(count)]

    def ready() -> bool:
        # The line ``naboom worker`` logs (at INFO) once its receivers start, as the tests wait for.
        for w in workers:
            w.check_alive()
        return all("worker for critical ready" in w.log_path.read_text(errors="replace") for w in workers)

    wait_until(ready, 60, f"{count} worker(s) to read the critical queue", every=0.2)
    return workers


async def submit_all(rig: Rig, base_url: str, phase: Phase) -> tuple[float, float]:
    """POST the phase's N signed SOS; (first submit, last 201) in Unix seconds."""
    import httpx

    from naboom.ingest.signing import signed_payload

    a = rig.args
    done_at: list[float] = []
    sem = asyncio.Semaphore(a.concurrency)

    async def submit(client: httpx.AsyncClient, seq: int) -> None:
        payload = {
            "pid": phase.device["pid"],
            "ts": int(time.time()),
            "nonce": f"{rig.run}-{phase.workers}-{seq}",
            "msg": f"bench {seq}",
            "lat": -24.53,
            "lng": 28.71,
            "acc": 10.0,
            "kid": phase.device["kid"],
        }
        body = json.dumps(signed_payload(payload, phase.device["secret"]))
        async with sem:
            resp = await client.post(
                "/panic/api/submit", content=body, headers={"Content-Type": "application/json"}
            )
        if resp.status_code != 201:
            raise RuntimeError(f"SOS {seq}: {resp.status_code} {resp.text}")
        done_at.append(time.time())

    limits = httpx.Limits(max_connections=a.concurrency, max_keepalive_connections=a.concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        t_first = time.time()
        if a.rate:
            t0, tasks = time.monotonic(), []
            for seq in range(a.count):
                delay = t0 + seq / a.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(submit(client, seq)))
            await asyncio.gather(*tasks)
        else:
            seqs = iter(range(a.count))

            async def submitter() -> None:
                for seq in seqs:
                    await submit(client, seq)

            await asyncio.gather(*(submitter() for _ in range(a.concurrency)))
    return t_first, max(done_at)


async def wait_sent(rig: Rig, pg: Any, phase: Phase, children: list[Naboom]) -> None:
    """Until all N*K of the phase's messages are sent; fail early on failures or a wrong count."""
    a = rig.args
    expected = a.count * a.contacts
    deadline = time.monotonic() + a.timeout
    last_log = 0.0
    while True:
        sent, failed, total, alerted = await pg.fetchrow(
            """SELECT count(*) FILTER (WHERE m.status IN ('sent', 'delivered')),
                      count(*) FILTER (WHERE m.status = 'failed'), count(*),
                      (SELECT count(*) FROM incident WHERE region = $1 AND alerted_at IS NOT NULL)
               FROM outbound_message m WHERE m.region = $1""",
            phase.region,
        )
        if failed:
            raise RuntimeError(f"{failed} message(s) failed; see the worker logs")
        # Every incident's alerts are queued in the same transaction that marks it alerted.
        if alerted == a.count and total != expected:
            raise RuntimeError(f"{total} messages queued for {a.count} SOS x {a.contacts} responders")
        if sent >= expected:
            return
        for child in children:
            child.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out: {sent} of {expected} sent ({total} queued)")
        if time.monotonic() - last_log > 2:
            log(f"{sent} of {expected} sent, {total} queued")
            last_log = time.monotonic()
        await asyncio.sleep(0.1)


async def measure(
    rig: Rig, base_url: str, phase: Phase, pids: dict[str, int], children: list[Naboom]
) -> dict[str, Any]:
    """Submit the phase's SOS, wait for every SMS; its figures (message ids kept on ``phase``)."""
    import asyncpg

    a = rig.args
    assert rig.db is not None
    pg = await asyncpg.connect(rig.db.url("postgresql"))
    try:
        log(
            f"{phase.workers} worker(s): {a.count} SOS"
            + (f" at {a.rate:g}/s" if a.rate else f", {a.concurrency} at a time")
            + f"; {a.count * a.contacts} SMS expected"
        )
        meter = CpuMeter(pids)
        t_first, t_submitted = await submit_all(rig, base_url, phase)
        log(f"all {a.count} SOS accepted (201) in {t_submitted - t_first:.2f}s; waiting for the SMS")
        await wait_sent(rig, pg, phase, children)
        cpu = meter.stop()
        rows = await pg.fetch(
            """SELECT m.id, m.attempts,
                      extract(epoch FROM i.received_at)::float8 AS received,
                      extract(epoch FROM m.created_at)::float8 AS queued,
                      extract(epoch FROM a.started_at)::float8 AS claimed,
                      extract(epoch FROM m.sent_at)::float8 AS sent
               FROM outbound_message m
               JOIN incident i ON i.id = m.incident_id
               LEFT JOIN sms_attempt a ON a.message_id = m.id AND a.number = m.attempts
               WHERE m.region = $1""",
            phase.region,
        )
        incidents = await pg.fetchval("SELECT count(*) FROM incident WHERE region = $1", phase.region)
        uneven = await pg.fetchval(
            """SELECT count(*) FROM (SELECT i.id FROM incident i LEFT JOIN outbound_message m ON m.incident_id = i.id
               WHERE i.region = $1 GROUP BY i.id HAVING count(m.id) <> $2) AS wrong""",
            phase.region,
            a.contacts,
        )
        logged = await pg.fetchval(
            "SELECT count(*) FROM sms_attempt a JOIN outbound_message m ON m.id = a.message_id WHERE m.region = $1",
            phase.region,
        )
    finally:
        await pg.close()
    if incidents != a.count:
        raise RuntimeError(f"{incidents} incidents for {a.count} distinct SOS (must be one each)")
    if uneven:
        raise RuntimeError(f"{uneven} incident(s) without exactly {a.contacts} messages")
    phase.message_ids = {str(r["id"]) for r in rows}
    t_last = max(r["sent"] for r in rows)
    return {
        "workers": phase.workers,
        "messages": len(rows),
        "sms_per_s": round(len(rows) / (t_last - t_first), 1),
        "elapsed_s": round(t_last - t_first, 3),
        "submit_per_s": round(a.count / (t_submitted - t_first), 1),
        "tail_after_last_submit_s": round(t_last - t_submitted, 3),
        "latency_ms": summary([(r["sent"] - r["received"]) * 1000 for r in rows]),
        "stages_ms": {
            "received_to_queued": summary([(r["queued"] - r["received"]) * 1000 for r in rows]),
            "queued_to_claimed": summary([(r["claimed"] - r["queued"]) * 1000 for r in rows]),
            "claimed_to_sent": summary([(r["sent"] - r["claimed"]) * 1000 for r in rows]),
        },
        "attempts": sum(r["attempts"] for r in rows),
        "attempts_logged": logged,
        # PostgreSQL, Redis and anything else running on the machine show only in its busy fraction.
        "cpu_s": cpu,
    }


def tally(phases: list[Phase], requests: list[dict[str, Any]]) -> tuple[int, int, list[str]]:
    """(lost, doubled, problems): each phase's messages accepted at the gateway exactly once."""
    accepted = Counter(r["client_message_id"] for r in requests if r["action"] == "accept")
    expected = set().union(*(p.message_ids or set() for p in phases))
    lost = len(expected - accepted.keys())
    doubled = sum(n - 1 for n in accepted.values()) + sum(n for k, n in accepted.items() if k not in expected)
    problems = []
    for p in phases:
        r = p.result or {}
        if not (r.get("attempts") == r.get("attempts_logged") == r.get("messages")):
            problems.append(
                f"{p.workers} worker(s): attempts {r.get('attempts')} (logged {r.get('attempts_logged')}) "
                f"for {r.get('messages')} messages; the gateway never fails, so they must be equal"
            )
    if len(requests) != len(expected):
        problems.append(f"{len(requests)} gateway requests for {len(expected)} messages")
    return lost, doubled, problems


def body(rig: Rig) -> dict[str, Any]:
    """The installation, one phase per worker count, the gateway's account of every SMS."""
    a = rig.args
    if a.quick:
        a.count = min(a.count, 30)
    counts = [int(w) for w in a.workers.split(",") if w.strip()]
    rig.mosquitto()
    rig.database()
    gateway, fake = start_gateway(rig)
    env = rig.env(
        NABOOM_SMS_PROVIDER="clickatell",
        NABOOM_CLICKATELL_URL=fake["url"],
        NABOOM_CLICKATELL_API_KEY=fake["api_key"],
    )
    if a.worker_concurrency:
        env["NABOOM_WORKER_CONCURRENCY"] = str(a.worker_concurrency)
    # Workers log their "ready" line at INFO; the server stays quiet.
    worker_env = {**env, "NABOOM_LOG_LEVEL": "INFO"}
    rig.cli(env, "migrate")
    admin, password = rig.user(env, "admin")
    server = rig.serve(env)
    assert server.base_url is not None
    token = rig.login(server.base_url, admin, password)

    phases = []
    for count in counts:
        phase = provision(rig, server.base_url, token, count)
        workers = start_workers(rig, worker_env, count)
        pids = {"bench": os.getpid(), "gateway": gateway.pid, "serve": server.pid}
        pids.update({w.name: w.pid for w in workers})
        phase.result = asyncio.run(measure(rig, server.base_url, phase, pids, [server, *workers]))
        phases.append(phase)
        log(f"{count} worker(s): {phase.result['sms_per_s']} SMS/s")
        for w in workers:
            w.stop()
    lost, doubled, problems = tally(phases, gateway_requests(gateway))

    rows = []
    one = next((p.result["sms_per_s"] for p in phases if p.workers == 1 and p.result), None)
    for p in phases:
        assert p.result is not None
        row: dict[str, Any] = {
            "label": f"{p.workers} worker{'s' if p.workers > 1 else ''}",
            "measured": {"what": "SMS sent/s", "value": p.result["sms_per_s"], "unit": "SMS/s"},
        }
        if one and p.workers > 1:
            ceiling = round(one * p.workers, 1)
            row["ceiling"] = {"what": f"{p.workers} x the 1-worker rate", "value": ceiling, "unit": "SMS/s"}
            row["ratio"] = round(p.result["sms_per_s"] / ceiling, 2)
        rows.append(row)
    result: dict[str, Any] = {
        "lost": lost,
        "doubled": doubled,
        "quick": a.quick,
        "variant": f"N={a.count} K={a.contacts}" + (f" rate={a.rate:g}" if a.rate else ""),
        "table": rows,
        "phases": [p.result for p in phases],
        "count": a.count,
        "contacts": a.contacts,
        "worker_concurrency": a.worker_concurrency or "default",
        "offered_per_s": a.rate or None,
        "submit_concurrency": a.concurrency,
    }
    if problems:
        result.update(ok=False, error="; ".join(problems))
    return result


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--count", type=int, default=300, help="SOS per phase (default 300)")
    parser.add_argument("--contacts", type=int, default=3, help="responder contacts per region (default 3)")
    parser.add_argument("--workers", default="1,2", help="worker counts, one phase each (default 1,2)")
    parser.add_argument(
        "--worker-concurrency", type=int, default=0, help="NABOOM_WORKER_CONCURRENCY (default: the product's)"
    )
    parser.add_argument("--rate", type=float, default=0, help="offered SOS per second (default: unlimited)")
    parser.add_argument("--concurrency", type=int, default=10, help="submits in flight at once (default 10)")
    # Internal: the same file runs the fake gateway as a child process.
    parser.add_argument("--role", choices=["main", "gateway"], default="main", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "gateway":
        run_gateway()
        return
    for name in ("count", "contacts", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    sys.exit(run_bench("tasks", args, body))


if __name__ == "__main__":
    main()
