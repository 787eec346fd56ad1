#!/usr/bin/env python
"""SMS alert benchmark: N signed SOS over HTTP, K responders each, through ``naboom worker`` to a gateway.

    .venv/bin/python bench/alerts.py                          # 300 SOS x 3 responders, 1 worker
    .venv/bin/python bench/alerts.py --workers 2              # two ``naboom worker --queue critical``
    .venv/bin/python bench/alerts.py --rate 20                # a fixed offered load, for latency

It builds everything it needs and removes it again: a fresh PostgreSQL database (``createdb``),
``naboom migrate``, an admin through the CLI, its own Mosquitto on a free loopback port (``naboom
serve`` needs a broker; the SOS go over HTTP), ``naboom serve`` and W ``naboom worker --queue
critical`` as child processes on Redis under a key prefix of their own, and the fake Clickatell
gateway of the tests (``tests/fakes/clickatell.py``, a real HTTP server, accepting everything) in
a child process of its own. Through the admin API: a region, K responder contacts, a device.
Then N SOS go to ``POST /panic/api/submit`` (``--concurrency`` at a time, or paced to
``--rate``) and the run waits until every outbound message is ``sent``. Measured:

* ``sms_per_s``: N*K ÷ (first submit → the last message's ``sent_at``).
* ``latency_ms``: incident ``received_at`` → message ``sent_at``, p50/p95/p99/max, from the rows.
* ``stages_ms``: where that time goes, per message (p50/p95): ``received_to_queued`` (the API
  kicks the alert task, a worker runs it and queues the K messages), ``queued_to_claimed`` (the
  ``send_sms`` task waits for a worker and claims the message), ``claimed_to_sent`` (the gateway
  call and recording the outcome).
* ``attempts``: the attempts logged; with a gateway that never fails it must be N*K.

The run fails (exit status 1) unless each SOS opened one incident with exactly K messages, every
message reached the gateway exactly once (by ``clientMessageId``), and attempts = N*K.
``--gateway-latency-ms`` is not offered: the fake answers at once and has no delay to set.

Progress goes to stderr; stdout carries only the JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NABOOM = str(Path(sys.executable).parent / "naboom")
HOST = "127.0.0.1"


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


def summary(values: list[float], *ps: float) -> dict[str, float]:
    ordered = sorted(values)
    out = {f"p{p:g}": round(percentile(ordered, p), 1) for p in ps}
    out["max"] = round(ordered[-1], 1)
    return out


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
        self._start: dict[str, float] = {}
        self._machine = (0.0, 0.0)

    def start(self) -> None:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._machine = machine_cpu()

    def stop(self) -> dict[str, Any]:
        used = {name: round(cpu_seconds(pid) - self._start[name], 2) for name, pid in self.pids.items()}
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


# --- orchestration --------------------------------------------------------------------------------


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


@dataclass
class Child:
    """A ``naboom`` child process and its log."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{_tail(self.log_path)}")


@dataclass
class Rig:
    """Everything the measurement runs against, built by :func:`build`."""

    args: argparse.Namespace
    run: str
    region: str
    pg_url: str
    base_url: str
    token: str
    device: dict[str, Any]
    children: list[Child]
    gateway: subprocess.Popen[str]


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Build the rig, measure, check, tear everything down (also on failure)."""
    teardown = Teardown()
    work = Path(tempfile.mkdtemp(prefix="naboom-bench-alerts-"))
    teardown.push("work dir", lambda: shutil.rmtree(work, ignore_errors=True))
    try:
        rig = build(args, work, teardown)
        result, rows = asyncio.run(measure(rig))
        verify(rig, result, rows, gateway_report(rig))
        return result
    finally:
        log("tearing down")
        teardown.run()


def build(args: argparse.Namespace, work: Path, teardown: Teardown) -> Rig:
    """Mosquitto, a fresh database, the gateway, ``naboom serve``, the workers, a region with responders."""
    import httpx
    import redis

    run = uuid.uuid4().hex[:8]
    region = f"BENCH-{run.upper()}"
    prefix = f"bench-alerts-{run}"

    # ``naboom serve`` starts its MQTT ingest: a Mosquitto of our own, so no other session is touched.
    mqtt_port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {mqtt_port} {HOST}\nallow_anonymous true\npersistence false\n")
    mosquitto = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    teardown.push("mosquitto", lambda: stop_process(mosquitto))
    wait_until(lambda: port_open(mqtt_port) or mosquitto.poll() is not None, 20, "mosquitto to listen")
    if mosquitto.poll() is not None:
        raise RuntimeError(f"mosquitto exited with {mosquitto.returncode}; see {conf}")

    dbname = f"naboom_bench_{run}"
    pg = ["-h", args.pg_host, "-p", str(args.pg_port), "-U", args.pg_user]
    subprocess.run(["createdb", *pg, dbname], check=True)
    teardown.push(
        "database", lambda: subprocess.run(["dropdb", *pg, "--force", "--if-exists", dbname], check=True)
    )
    pg_url = f"postgresql://{args.pg_user}@{args.pg_host}:{args.pg_port}/{dbname}"

    # Every key of this installation starts with its prefix; the live feed's also name the region.
    r = redis.Redis.from_url(args.redis_url)
    teardown.push("redis keys", lambda: _drop_keys(r, [f"{prefix}*", f"*{region}*"]))

    gateway = subprocess.Popen(
        [sys.executable, __file__, "--role", "gateway"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    teardown.push("gateway", lambda: stop_process(gateway))
    assert gateway.stdout is not None
    line = gateway.stdout.readline()
    if not line:
        raise RuntimeError(f"the fake gateway exited with {gateway.wait()}")
    fake = json.loads(line)
    log(f"fake Clickatell gateway pid {gateway.pid} on {fake['url']}")

    http_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NABOOM_")}
    env.update(
        {
            "NABOOM_DATABASE_URL": pg_url.replace("postgresql://", "postgresql+asyncpg://"),
            "NABOOM_REDIS_URL": args.redis_url,
            "NABOOM_REDIS_PREFIX": prefix,
            "NABOOM_MQTT_URL": f"mqtt://{HOST}:{mqtt_port}",
            "NABOOM_HTTP_PORT": str(http_port),
            "NABOOM_MQTT_CLIENT_ID": f"bench-alerts-{run}",
            "NABOOM_VAR_DIR": str(work / "var"),
            "NABOOM_SECRET_KEY": f"bench-secret-{uuid.uuid4().hex}",
            # The product's default; the workers' "ready" line is logged at INFO.
            "NABOOM_LOG_LEVEL": "INFO",
            # Every SOS comes from one device: each must open its own incident, as N devices would.
            "NABOOM_SOS_ATTACH_WINDOW_SECONDS": "0",
            "NABOOM_SMS_PROVIDER": "clickatell",
            "NABOOM_CLICKATELL_URL": fake["url"],
            "NABOOM_CLICKATELL_API_KEY": fake["api_key"],
        }
    )
    if args.worker_concurrency:
        env["NABOOM_WORKER_CONCURRENCY"] = str(args.worker_concurrency)

    def cli(*cmd: str, stdin: str | None = None) -> str:
        out = subprocess.run(
            [NABOOM, *cmd], env=env, input=stdin, capture_output=True, text=True, timeout=120
        )
        if out.returncode != 0:
            raise RuntimeError(f"naboom {' '.join(cmd)} failed: {out.stderr}")
        return out.stdout

    cli("migrate")
    password = uuid.uuid4().hex
    cli("user", "create", f"bench-admin-{run}", "--role", "admin", stdin=password + "\n")
    log(f"database {dbname} migrated; admin created")

    def spawn(name: str, *cmd: str) -> Child:
        log_path = work / f"{name}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen([NABOOM, *cmd], env=env, stdout=out, stderr=subprocess.STDOUT)
        teardown.push(name, lambda: stop_process(proc))
        return Child(name, proc, log_path)

    serve = spawn("serve", "serve")
    base = f"http://{HOST}:{http_port}"

    def healthy() -> bool:
        serve.check()
        try:
            return httpx.get(f"{base}/monitoring/health/", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, 60, "naboom serve to be healthy")
    workers = [spawn(f"worker-{n}", "worker", "--queue", "critical") for n in range(args.workers)]

    def ready() -> bool:
        # The line ``naboom worker`` logs (at INFO) once its receivers start, as the tests wait for.
        for w in workers:
            w.check()
        return all("worker for critical ready" in w.log_path.read_text(errors="replace") for w in workers)

    wait_until(ready, 60, f"{args.workers} worker(s) to read the critical queue", every=0.2)
    log(f"naboom serve pid {serve.proc.pid} on {base}; worker pid(s) {[w.proc.pid for w in workers]}")

    login = httpx.post(
        f"{base}/api/auth/login", json={"username": f"bench-admin-{run}", "password": password}
    )
    login.raise_for_status()
    token = login.json()["token"]
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as admin:

        def ok(path: str, body: dict[str, Any]) -> Any:
            resp = admin.post(path, json=body)
            if resp.status_code != 201:
                raise RuntimeError(f"POST {path}: {resp.status_code} {resp.text}")
            return resp.json()

        ok("/api/regions", {"code": region, "name": f"Bench {run}"})
        for n in range(args.contacts):
            ok(f"/api/regions/{region}/contacts", {"name": f"Responder {n}", "phone": f"+2782{n:07d}"})
        device = ok("/api/devices", {"pid": f"bench-{run}", "region": region})
    log(f"region {region} with {args.contacts} responder(s) and device {device['pid']}")
    return Rig(args, run, region, pg_url, base, token, device, [serve, *workers], gateway)


async def measure(rig: Rig) -> tuple[dict[str, Any], list[Any]]:
    """Submit N SOS, wait until all N*K messages are sent; the figures and the per-message rows."""
    import asyncpg
    import httpx

    from naboom.ingest.signing import signed_payload

    args = rig.args
    expected = args.count * args.contacts
    pg = await asyncpg.connect(rig.pg_url)
    try:
        sem = asyncio.Semaphore(args.concurrency)
        done_at: list[float] = []

        async def submit(client: httpx.AsyncClient, seq: int) -> None:
            payload = {
                "pid": rig.device["pid"],
                "ts": int(time.time()),
                "nonce": f"{rig.run}-{seq}",
                "msg": f"bench {seq}",
                "lat": -24.53,
                "lng": 28.71,
                "acc": 10.0,
                "kid": rig.device["kid"],
            }
            body = json.dumps(signed_payload(payload, rig.device["secret"]))
            async with sem:
                resp = await client.post(
                    "/panic/api/submit", content=body, headers={"Content-Type": "application/json"}
                )
            if resp.status_code != 201:
                raise RuntimeError(f"SOS {seq}: {resp.status_code} {resp.text}")
            done_at.append(time.time())

        log(
            f"submitting {args.count} SOS"
            + (f" at {args.rate:g}/s" if args.rate else f", {args.concurrency} at a time")
            + f"; {expected} SMS expected"
        )
        meter = CpuMeter(
            {"bench": os.getpid(), "gateway": rig.gateway.pid, **{c.name: c.proc.pid for c in rig.children}}
        )
        meter.start()
        limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
        async with httpx.AsyncClient(base_url=rig.base_url, timeout=60, limits=limits) as client:
            t_first = time.time()
            if args.rate:
                t0, tasks = time.monotonic(), []
                for seq in range(args.count):
                    delay = t0 + seq / args.rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(submit(client, seq)))
                await asyncio.gather(*tasks)
            else:
                seqs = iter(range(args.count))

                async def submitter() -> None:
                    for seq in seqs:
                        await submit(client, seq)

                await asyncio.gather(*(submitter() for _ in range(args.concurrency)))
        t_submitted = max(done_at)
        log(f"all {args.count} SOS accepted (201) in {t_submitted - t_first:.2f}s; waiting for the SMS")

        # Polling the table is fine here: the bench reads, the product does not wait on it.
        deadline = time.monotonic() + args.timeout
        last_log = 0.0
        while True:
            sent, failed, total = await pg.fetchrow(
                """SELECT count(*) FILTER (WHERE status IN ('sent', 'delivered')),
                          count(*) FILTER (WHERE status = 'failed'), count(*)
                   FROM outbound_message WHERE region = $1""",
                rig.region,
            )
            if failed:
                raise RuntimeError(f"{failed} message(s) failed; see the worker logs")
            if total != expected and total == await _queued_for_all(pg, rig):
                # Every incident's alerts are queued (in the same transaction that marks it alerted).
                raise RuntimeError(
                    f"{total} messages queued for {args.count} SOS x {args.contacts} responders"
                )
            if sent >= expected:
                break
            for child in rig.children:
                child.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out: {sent} of {expected} sent ({total} queued)")
            if time.monotonic() - last_log > 2:
                log(f"{sent} of {expected} sent, {total} queued")
                last_log = time.monotonic()
            await asyncio.sleep(0.1)
        cpu = meter.stop()

        rows = await pg.fetch(
            """SELECT m.id, m.incident_id, m.attempts,
                      extract(epoch FROM i.received_at)::float8 AS received,
                      extract(epoch FROM m.created_at)::float8 AS queued,
                      extract(epoch FROM a.started_at)::float8 AS claimed,
                      extract(epoch FROM m.sent_at)::float8 AS sent
               FROM outbound_message m
               JOIN incident i ON i.id = m.incident_id
               LEFT JOIN sms_attempt a ON a.message_id = m.id AND a.number = m.attempts
               WHERE m.region = $1""",
            rig.region,
        )
        incidents = await pg.fetchval("SELECT count(*) FROM incident WHERE region = $1", rig.region)
        wrong = await pg.fetch(
            """SELECT i.id, count(m.id) AS n FROM incident i LEFT JOIN outbound_message m ON m.incident_id = i.id
               WHERE i.region = $1 GROUP BY i.id HAVING count(m.id) <> $2""",
            rig.region,
            args.contacts,
        )
        logged_attempts = await pg.fetchval(
            """SELECT count(*) FROM sms_attempt a JOIN outbound_message m ON m.id = a.message_id
               WHERE m.region = $1""",
            rig.region,
        )
    finally:
        await pg.close()

    if incidents != args.count:
        raise RuntimeError(f"{incidents} incidents for {args.count} distinct SOS (must be one each)")
    if wrong:
        raise RuntimeError(
            f"{len(wrong)} incident(s) without exactly {args.contacts} messages, e.g. "
            + ", ".join(f"{w['id']}: {w['n']}" for w in wrong[:5])
        )
    t_last_sent = max(r["sent"] for r in rows)
    elapsed = t_last_sent - t_first
    result = {
        "count": args.count,
        "contacts": args.contacts,
        "workers": args.workers,
        "worker_concurrency": args.worker_concurrency or 50,
        "offered_rate_per_s": args.rate or None,
        "submit_concurrency": args.concurrency,
        "submit_rate_per_s": round(args.count / (t_submitted - t_first), 1),
        "messages": len(rows),
        "sms_per_s": round(len(rows) / elapsed, 1),
        "elapsed_s": round(elapsed, 3),
        "tail_after_last_submit_s": round(t_last_sent - t_submitted, 3),
        "latency_ms": summary([(r["sent"] - r["received"]) * 1000 for r in rows], 50, 95, 99),
        "stages_ms": {
            "received_to_queued": summary([(r["queued"] - r["received"]) * 1000 for r in rows], 50, 95),
            "queued_to_claimed": summary([(r["claimed"] - r["queued"]) * 1000 for r in rows], 50, 95),
            "claimed_to_sent": summary([(r["sent"] - r["claimed"]) * 1000 for r in rows], 50, 95),
        },
        "attempts": sum(r["attempts"] for r in rows),
        "attempts_logged": logged_attempts,
        # From the first submit until all were sent; PostgreSQL, Redis and anything else running
        # on the machine show only in the machine's busy fraction.
        "cpu_s": cpu,
    }
    return result, rows


async def _queued_for_all(pg: Any, rig: Rig) -> int | None:
    """The messages queued, once all N incidents are alerted (else None)."""
    alerted = await pg.fetchval(
        "SELECT count(*) FROM incident WHERE region = $1 AND alerted_at IS NOT NULL", rig.region
    )
    if alerted < rig.args.count:
        return None
    return int(await pg.fetchval("SELECT count(*) FROM outbound_message WHERE region = $1", rig.region))


def gateway_report(rig: Rig) -> list[dict[str, Any]]:
    """Every request the gateway read (it stops after answering)."""
    out, _ = rig.gateway.communicate("report\n", timeout=60)
    if not out.strip():
        raise RuntimeError(f"the fake gateway exited with {rig.gateway.returncode} without a report")
    return list(json.loads(out.strip().splitlines()[-1]))


def verify(rig: Rig, result: dict[str, Any], rows: list[Any], requests: list[dict[str, Any]]) -> None:
    """Each message at the gateway exactly once, and one attempt each; else fail loudly."""
    expected = rig.args.count * rig.args.contacts
    accepted = Counter(r["client_message_id"] for r in requests if r["action"] == "accept")
    result["gateway_requests"] = len(requests)
    result["gateway_accepted"] = sum(accepted.values())
    problems = []
    if twice := {k: n for k, n in accepted.items() if n > 1}:
        problems.append(
            f"{len(twice)} message(s) sent more than once at the gateway, e.g. {next(iter(twice))}"
        )
    if missing := {str(r["id"]) for r in rows} - set(accepted):
        problems.append(f"{len(missing)} message(s) marked sent never reached the gateway")
    if strangers := set(accepted) - {str(r["id"]) for r in rows}:
        problems.append(f"the gateway accepted {len(strangers)} message(s) the database does not have")
    if result["attempts"] != expected or result["attempts_logged"] != expected or len(requests) != expected:
        problems.append(
            f"attempts {result['attempts']} (logged {result['attempts_logged']}, gateway requests "
            f"{len(requests)}) for {expected} messages; the gateway never fails, so they must be equal"
        )
    if problems:
        raise RuntimeError("; ".join(problems))
    result["sent_exactly_once"] = True


def _drop_keys(r: Any, patterns: list[str]) -> None:
    keys = {k for pattern in patterns for k in r.scan_iter(match=pattern, count=1000)}
    if keys:
        r.delete(*keys)
    log(f"removed {len(keys)} redis key(s)")


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=300, help="SOS to submit (default 300)")
    parser.add_argument(
        "--contacts", type=int, default=3, help="responder contacts of the region (default 3)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="naboom worker --queue critical processes (default 1)"
    )
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=0,
        help="NABOOM_WORKER_CONCURRENCY (default: the product's, 50)",
    )
    parser.add_argument("--rate", type=float, default=0, help="offered SOS per second (default: unlimited)")
    parser.add_argument("--concurrency", type=int, default=10, help="submits in flight at once (default 10)")
    parser.add_argument(
        "--timeout", type=float, default=300, help="give up waiting for the SMS after this long"
    )
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    # Internal: the same file runs the fake gateway as a child process.
    parser.add_argument("--role", choices=["main", "gateway"], default="main", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "gateway":
        run_gateway()
        return
    for name in ("count", "contacts", "workers", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    try:
        result = bench(args)
    except RuntimeError as exc:
        log(f"FAILED: {exc}")
        sys.exit(1)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
