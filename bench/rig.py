"""What every benchmark builds, measures with and prints: one place, so the scripts stay about their load.

A benchmark script does::

    from rig import Rig, add_common_args, run_bench

    def body(rig: Rig) -> dict[str, Any]:
        port = rig.mosquitto(inflight=1000)
        rig.database()
        env = rig.env()
        rig.cli(env, "migrate")
        serve = rig.serve(env)
        ...                                   # load, measure, count
        return {"lost": 0, "doubled": 0, "my_numbers": ...}

    if __name__ == "__main__":
        args = parser.parse_args()
        sys.exit(run_bench("name", args, body))

:func:`run_bench` owns the JSON line (``bench``, ``ok``, ``lost``, ``doubled``, ``load_avg`` at
start and end, the body's keys; ``error`` when the body raised) and the exit status (0 only when
``ok``). A :class:`Rig` is a context manager: everything it started (Mosquitto, databases, Redis
keys under its prefix, ``naboom`` processes, the work directory) is undone on exit, last first,
each step even when another failed. Progress goes to stderr through :func:`log`.
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
import traceback
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NABOOM = str(Path(sys.executable).parent / "naboom")
HOST = "127.0.0.1"
STREAM_PATH = "/panic/api/stream"


def log(message: str) -> None:
    """Progress for the human watching; stdout is reserved for the one JSON line."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something accepts connections on the loopback ``port``."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def load_avg() -> float:
    """The 1-minute load average: numbers measured while it is high (2 cores) are not trusted."""
    return round(os.getloadavg()[0], 2)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far (Linux ``/proc``): is a process the bottleneck?"""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """``(busy, total)`` CPU seconds of the whole machine so far: two readings give how busy it was."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summary(values: list[float], ps: tuple[float, ...] = (50, 90, 95, 99)) -> dict[str, float] | None:
    """``{"p50", "p90", "p95", "p99", "max"}`` (one decimal) of ``values``; ``None`` when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    out = {f"p{p:g}": round(percentile(ordered, p), 1) for p in ps}
    out["max"] = round(ordered[-1], 1)
    return out


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll ``check`` until truthy (returned); raise after ``timeout`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Signal ``proc`` and reap it; SIGKILL if it outlives ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail(path: Path, lines: int = 40) -> str:
    """The end of a child's log, for error messages."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


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


# --- arguments and the JSON line -----------------------------------------------------------------


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line: its docstring as help, and :func:`add_common_args`."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    return parser


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--quick``, ``--timeout`` and where PostgreSQL and Redis are."""
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument(
        "--timeout", type=float, default=120, help="give up after this many seconds per phase"
    )
    parser.add_argument(
        "--keep-work", action="store_true", help="keep the work directory (logs) for a look after"
    )
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12", help="keys go under a run prefix")


def run_bench(name: str, args: argparse.Namespace, body: Callable[[Rig], dict[str, Any]]) -> int:
    """Run ``body`` in a fresh :class:`Rig`, print the one JSON line, return the exit status.

    ``ok`` is true only when the body returned, with ``lost == 0``, ``doubled == 0`` and no
    ``ok: false`` of its own. A body that raised still yields a line (``error``, ``lost``/``doubled``
    null: unknown), so ``bench/run`` always has something to tabulate.
    """
    started = load_avg()
    result: dict[str, Any]
    try:
        with Rig(args, name) as rig:
            result = body(rig)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        result = {"ok": False, "lost": None, "doubled": None, "error": f"{type(exc).__name__}: {exc}"}
    ok = bool(result.pop("ok", True)) and result.get("lost") == 0 and result.get("doubled") == 0
    line = {
        "bench": name,
        "ok": ok,
        "lost": result.pop("lost", None),
        "doubled": result.pop("doubled", None),
        "load_avg": {"start": started, "end": load_avg()},
        **({"quick": True} if getattr(args, "quick", False) else {}),
        **result,
    }
    print(json.dumps(line), flush=True)
    return 0 if ok else 1


# --- the rig --------------------------------------------------------------------------------------


@dataclass
class Database:
    """A fresh PostgreSQL database of this run (dropped at teardown)."""

    name: str
    psql_args: list[str]

    def url(self, driver: str = "postgresql+asyncpg") -> str:
        host, port, user = self.psql_args[1], self.psql_args[3], self.psql_args[5]
        return f"{driver}://{user}@{host}:{port}/{self.name}"

    def sql(self, statement: str) -> str:
        """Run SQL with ``psql`` and return its unaligned, tuples-only output."""
        out = subprocess.run(
            ["psql", *self.psql_args, "-d", self.name, "-tAc", statement], capture_output=True, text=True
        )
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr}")
        return out.stdout.strip()

    async def asql(self, statement: str) -> str:
        """:meth:`sql` without blocking the event loop."""
        return await asyncio.to_thread(self.sql, statement)


@dataclass
class Naboom:
    """One ``naboom`` child process (serve, worker, ...) with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]
    base_url: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return tail(self.log_path)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")

    def stop(self, timeout: float = 20) -> None:
        stop_process(self.proc, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL, no grace: what a crash looks like to everything else."""
        stop_process(self.proc, signal.SIGKILL)


@dataclass
class Rig:
    """One benchmark run's installation: use as a context manager; everything is undone on exit."""

    args: argparse.Namespace
    name: str
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    teardown: Teardown = field(default_factory=Teardown)
    work: Path = field(init=False)
    mqtt_port: int | None = None
    db: Database | None = None
    _redis_registered: bool = False

    def __enter__(self) -> Rig:
        self.work = Path(tempfile.mkdtemp(prefix=f"naboom-bench-{self.name}-"))
        if getattr(self.args, "keep_work", False):
            log(f"work directory (kept): {self.work}")
        else:
            self.teardown.push("work dir", lambda: shutil.rmtree(self.work, ignore_errors=True))
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        log("tearing down")
        self.teardown.run()

    @property
    def region(self) -> str:
        """This run's region; upper case because Litestar upper-cases Redis stream keys."""
        return f"BENCH-{self.run.upper()}"

    @property
    def redis_prefix(self) -> str:
        return f"naboom-bench-{self.name}-{self.run}"

    # --- parts ---

    def mosquitto(self, *, inflight: int = 1000, queued: int = 1_000_000, extra: tuple[str, ...] = ()) -> int:
        """Start a Mosquitto of this run on a free loopback port; returns the port.

        The ingest acknowledges after commit, so ``max_inflight_messages`` caps its throughput
        (NOTES.md); ``queued`` must exceed whatever may pile up for one session, or QoS 1
        messages are dropped.
        """
        port = free_port()
        conf = self.work / f"mosquitto-{port}.conf"
        lines = [
            f"listener {port} {HOST}",
            "allow_anonymous true",
            "persistence false",
            f"max_inflight_messages {inflight}",
            f"max_queued_messages {queued}",
            "max_queued_bytes 0",
            "set_tcp_nodelay true",
            f"log_dest file {self.work / f'mosquitto-{port}.log'}",
            "log_type error",
            "log_type warning",
            *extra,
        ]
        conf.write_text("\n".join(lines) + "\n")
        proc = subprocess.Popen(
            ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.teardown.push("mosquitto", lambda: stop_process(proc))
        wait_until(lambda: port_open(port) or proc.poll() is not None, 20, "mosquitto to listen")
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {proc.returncode}; config:\n{conf.read_text()}")
        log(f"mosquitto pid {proc.pid} on {HOST}:{port}")
        self.mqtt_port = port
        return port

    def database(self) -> Database:
        """A fresh, empty PostgreSQL database (``naboom migrate`` fills it: see :meth:`cli`)."""
        a = self.args
        name = f"naboom_bench_{self.name}_{self.run}".replace("-", "_")
        pg = ["-h", a.pg_host, "-p", str(a.pg_port), "-U", a.pg_user]
        subprocess.run(["createdb", *pg, name], check=True)
        self.teardown.push(
            "database", lambda: subprocess.run(["dropdb", *pg, "--force", "--if-exists", name], check=True)
        )
        self.db = Database(name, pg)
        return self.db

    def env(self, **extra: str) -> dict[str, str]:
        """``naboom``'s environment for this run (the database, Redis under its prefix, the broker).

        The caller's ``NABOOM_*`` variables are dropped so nothing leaks in from the shell.
        Registers the removal of the run's Redis keys the first time it is called.
        """
        if self.db is None or self.mqtt_port is None:
            raise RuntimeError("start mosquitto() and database() before env()")
        if not self._redis_registered:
            self._redis_registered = True
            self._drop_redis_keys_at_teardown()
        env = {k: v for k, v in os.environ.items() if not k.startswith("NABOOM_")}
        env.update(
            {
                "NABOOM_DATABASE_URL": self.db.url(),
                "NABOOM_REDIS_URL": self.args.redis_url,
                "NABOOM_REDIS_PREFIX": self.redis_prefix,
                "NABOOM_MQTT_URL": f"mqtt://{HOST}:{self.mqtt_port}",
                "NABOOM_HTTP_PORT": str(free_port()),
                "NABOOM_MQTT_CLIENT_ID": f"bench-{self.name}-{self.run}",
                "NABOOM_VAR_DIR": str(self.work / "var"),
                "NABOOM_SECRET_KEY": f"bench-secret-{self.run}-{uuid.uuid4().hex}",
                "NABOOM_LOG_LEVEL": "WARNING",
                # SOS from one device must each open an incident, as many devices' would.
                "NABOOM_SOS_ATTACH_WINDOW_SECONDS": "0",
            }
        )
        env.update(extra)
        return env

    def _drop_redis_keys_at_teardown(self) -> None:
        import redis

        client = redis.Redis.from_url(self.args.redis_url)
        patterns = [f"{self.redis_prefix}*", f"*{self.region}*"]

        def drop() -> None:
            keys = {k for p in patterns for k in client.scan_iter(match=p, count=1000)}
            if keys:
                client.delete(*keys)
            log(f"removed {len(keys)} redis keys")

        self.teardown.push("redis keys", drop)

    def cli(self, env: dict[str, str], *cmd: str, stdin: str | None = None) -> str:
        """``naboom CMD`` with ``env``; returns stdout, raises with stderr on failure."""
        out = subprocess.run(
            [NABOOM, *cmd], env=env, input=stdin, capture_output=True, text=True, timeout=120
        )
        if out.returncode != 0:
            raise RuntimeError(f"naboom {' '.join(cmd)} failed: {out.stderr}")
        return out.stdout

    def device(
        self, env: dict[str, str], region: str | None = None, pid: str | None = None
    ) -> dict[str, Any]:
        """A new device (``naboom device create``): ``{"pid", "kid", "secret"}``."""
        pid = pid or f"bench-{self.run}-{uuid.uuid4().hex[:6]}"
        return dict(json.loads(self.cli(env, "device", "create", pid, "--region", region or self.region)))

    def user(self, env: dict[str, str], role: str, *regions: str) -> tuple[str, str]:
        """A new user of ``role`` (``naboom user create``); returns ``(name, password)``."""
        name, password = f"bench-{role}-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        cmd = ["user", "create", name, "--role", role]
        for region in regions:
            cmd += ["--region", region]
        self.cli(env, *cmd, stdin=password + "\n")
        return name, password

    def process(self, env: dict[str, str], *cmd: str, name: str | None = None) -> Naboom:
        """Start ``naboom CMD`` as a child (stopped with SIGTERM at teardown); its output goes to a log file."""
        label = name or " ".join(cmd)
        log_path = self.work / f"{label.replace(' ', '-')}-{uuid.uuid4().hex[:4]}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen([NABOOM, *cmd], env=env, stdout=out, stderr=subprocess.STDOUT)
        child = Naboom(label, proc, log_path, env)
        self.teardown.push(label, child.stop)
        return child

    def serve(self, env: dict[str, str], name: str = "serve", timeout: float = 60) -> Naboom:
        """``naboom serve`` on ``env``'s port, returned once ``/monitoring/health/`` answers 200."""
        import httpx

        server = self.process(env, "serve", name=name)
        server.base_url = f"http://{HOST}:{env['NABOOM_HTTP_PORT']}"

        def healthy() -> bool:
            server.check_alive()
            try:
                return httpx.get(f"{server.base_url}/monitoring/health/", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout, f"{name} to be healthy")
        log(f"{name} pid {server.pid} healthy on {server.base_url}")
        return server

    def login(self, base_url: str, name: str, password: str) -> str:
        """A bearer token for ``name``."""
        import httpx

        r = httpx.post(f"{base_url}/api/auth/login", json={"username": name, "password": password})
        r.raise_for_status()
        return str(r.json()["token"])


# --- the live feed --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SseEvent:
    """One SSE frame as a benchmark sees it: when it arrived (monotonic ns), its type, id and data."""

    received_ns: int
    type: str
    id: str | None
    data: dict[str, Any]


@asynccontextmanager
async def sse_stream(base_url: str, token: str, region: str) -> AsyncIterator[AsyncIterator[SseEvent]]:
    """Open a region's live feed; entered once the server greets (the subscription is live).

    Each event is stamped at the moment its blank line (the end of the frame) is read, before
    JSON decoding, so a slow reader's parsing does not pad the latency it reports.
    """
    import httpx

    async with (
        httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30.0, read=None)) as client,
        # The token in a header, not the URL: an error message then shows no credential.
        client.stream(
            "GET", STREAM_PATH, params={"region": region}, headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        response.raise_for_status()
        lines = response.aiter_lines()
        async for line in lines:
            if line.startswith(": connected"):
                break

        async def events() -> AsyncIterator[SseEvent]:
            kind, event_id, data = "message", None, list[str]()
            async for line in lines:
                if line == "":
                    if data:
                        now = time.monotonic_ns()
                        decoded = json.loads("\n".join(data))
                        yield SseEvent(now, kind, event_id, decoded if isinstance(decoded, dict) else {})
                    kind, event_id, data = "message", None, []
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())

        yield events()
