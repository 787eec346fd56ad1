"""Test helpers: real processes, real brokers, waiting on conditions (never on time)."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from naboom.ingest.signing import signed_payload
from naboom.settings import get_settings

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
NABOOM = str(Path(sys.executable).parent / "naboom")
PG_ADMIN_URL = os.environ.get("NABOOM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("NABOOM_TEST_REDIS", "redis://127.0.0.1:6379/9")


def _mqtt_port() -> int:
    """The Mosquitto this test process uses: under pytest-xdist each worker has its own (a server
    of one worker must not take the SOS another worker's test sends), else the machine's."""
    ports, worker = os.environ.get("NABOOM_TEST_MQTT_PORTS"), os.environ.get("PYTEST_XDIST_WORKER")
    if ports and worker:
        return int(ports.split(",")[int(worker.removeprefix("gw"))])
    return int(os.environ.get("NABOOM_TEST_MQTT_PORT", "1883"))


MQTT_HOST, MQTT_PORT = "127.0.0.1", _mqtt_port()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@overload
async def wait_for(
    check: Callable[[], Awaitable[T | None]], timeout: float = 20.0, what: str = "condition"
) -> T: ...


@overload
async def wait_for(check: Callable[[], T | None], timeout: float = 20.0, what: str = "condition") -> T: ...


async def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``.

    ``check`` may be a plain function or a coroutine function: an awaitable result is awaited.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def wait_for_sync(check: Callable[[], T | None], timeout: float = 20.0, what: str = "condition") -> T:
    """The blocking twin of :func:`wait_for`, for fixtures."""
    return asyncio.run(wait_for(check, timeout, what))


def unique_region() -> str:
    """A region no other test uses."""
    return f"ZA-{uuid.uuid4().hex[:6]}"


def unique_pid(prefix: str = "btn") -> str:
    """A device id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_database() -> str:
    """A fresh, migrated PostgreSQL database; returns its asyncpg URL."""
    name = f"naboom_test_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", PG_ADMIN_URL, "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


def drop_database(url: str) -> None:
    """Remove a database made by :func:`create_database`."""
    name = url.rsplit("/", 1)[1]
    subprocess.run(["psql", PG_ADMIN_URL, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True)


def psql(url: str, sql: str) -> str:
    """Run SQL against a test database and return psql's unaligned output."""
    plain = url.replace("postgresql+asyncpg://", "postgresql://")
    out = subprocess.run(["psql", plain, "-tAc", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


@dataclass
class Stack:
    """Environment for one product installation under test (database, Redis, MQTT, ports)."""

    var_dir: Path
    database_url: str | None
    redis_url: str | None
    mqtt_url: str | None
    http_port: int = field(default_factory=free_port)
    client_id: str = field(default_factory=lambda: f"naboom-test-{uuid.uuid4().hex[:8]}")
    embedded_mqtt_port: int = field(default_factory=free_port)
    embedded_mqtt_ws_port: int = field(default_factory=free_port)
    extra: dict[str, str] = field(default_factory=dict)
    secret_key: str = field(default_factory=lambda: f"test-secret-{uuid.uuid4().hex}")
    # One installation's Redis keys (task queues, scheduler lock, live streams) apart from the others'.
    redis_prefix: str = field(default_factory=lambda: f"naboom-test-{uuid.uuid4().hex[:8]}")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def mqtt_address(self) -> tuple[str, int]:
        if self.mqtt_url is None:
            return "127.0.0.1", self.embedded_mqtt_port
        return MQTT_HOST, MQTT_PORT

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NABOOM_")}
        env.update(
            {
                "NABOOM_VAR_DIR": str(self.var_dir),
                "NABOOM_SECRET_KEY": self.secret_key,
                "NABOOM_HTTP_PORT": str(self.http_port),
                "NABOOM_REDIS_PREFIX": self.redis_prefix,
                "NABOOM_MQTT_CLIENT_ID": self.client_id,
                "NABOOM_EMBEDDED_MQTT_PORT": str(self.embedded_mqtt_port),
                "NABOOM_EMBEDDED_MQTT_WS_PORT": str(self.embedded_mqtt_ws_port),
                "NABOOM_SSE_HEARTBEAT_SECONDS": "1",
                "NABOOM_LOG_LEVEL": "INFO",
                # Tests that send several SOS from one device expect one incident each; the
                # lifecycle tests that prove attaching set their own window.
                "NABOOM_SOS_ATTACH_WINDOW_SECONDS": "0",
            }
        )
        for key, value in (
            ("NABOOM_DATABASE_URL", self.database_url),
            ("NABOOM_REDIS_URL", self.redis_url),
            ("NABOOM_MQTT_URL", self.mqtt_url),
        ):
            if value:
                env[key] = value
        env.update(self.extra)
        return env

    def cli(self, *args: str, stdin: str | None = None) -> str:
        """Run ``naboom ARGS`` against this stack; returns stdout."""
        out = subprocess.run(
            [NABOOM, *args], env=self.env(), input=stdin, capture_output=True, text=True, timeout=120
        )
        if out.returncode != 0:
            raise AssertionError(f"naboom {' '.join(args)} failed: {out.stderr}")
        return out.stdout

    def create_device(self, pid: str, region: str) -> dict[str, Any]:
        return json.loads(self.cli("device", "create", pid, "--region", region))

    def rotate_device(self, pid: str) -> dict[str, Any]:
        return json.loads(self.cli("device", "rotate", pid))

    def create_user(self, name: str, role: str, *regions: str, password: str = "correct-horse-1") -> str:
        args = ["user", "create", name, "--role", role]
        for region in regions:
            args += ["--region", region]
        self.cli(*args, stdin=password + "\n")
        return password

    def login(self, name: str, password: str = "correct-horse-1") -> str:
        r = httpx.post(f"{self.base_url}/api/auth/login", json={"username": name, "password": password})
        r.raise_for_status()
        return str(r.json()["token"])

    def operator(self, *regions: str) -> str:
        """A new, uniquely named operator of ``regions``, logged in; returns the token."""
        return self._new_user("op", "operator", *regions)

    def admin(self) -> str:
        """A new, uniquely named admin, logged in; returns the token."""
        return self._new_user("admin", "admin")

    def new_region(self) -> tuple[str, dict[str, Any], str]:
        """A fresh region with one device and a logged-in operator of it: ``(region, device, token)``."""
        region = unique_region()
        device = self.create_device(unique_pid(), region)
        return region, device, self.operator(region)

    def _new_user(self, prefix: str, role: str, *regions: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.create_user(name, role, *regions)
        return self.login(name)

    def submit(self, payload: dict[str, Any]) -> httpx.Response:
        """``POST /panic/api/submit`` with ``payload`` as the JSON body, the way a device sends it."""
        return httpx.post(
            f"{self.base_url}/panic/api/submit",
            content=json.dumps(payload),
            headers={"Content-Type": "application/json"},
        )

    def get(self, path: str, token: str, **params: Any) -> Any:
        r = httpx.get(f"{self.base_url}{path}", params=params, headers={"Authorization": f"Bearer {token}"})
        r.raise_for_status()
        return r.json()


@contextmanager
def fresh_stack(
    tmp_path_factory: Any, mqtt_url: str | None, extra: dict[str, str] | None = None
) -> Iterator[Stack]:
    """An installation on a fresh, migrated PostgreSQL database, Redis and the broker at ``mqtt_url``;
    the database is dropped afterwards. ``tmp_path_factory`` is pytest's."""
    url = create_database()
    stack = Stack(
        var_dir=tmp_path_factory.mktemp("var"),
        database_url=url,
        redis_url=REDIS_URL,
        mqtt_url=mqtt_url,
        extra=dict(extra or {}),
    )
    try:
        stack.cli("migrate")
        yield stack
    finally:
        drop_database(url)


class Process:
    """A ``naboom`` command (``worker``, ``scheduler``; ``serve`` is :class:`Server`) as a real child process.

    ``ready`` is a line its log must show before :meth:`start` returns.
    """

    def __init__(self, stack: Stack, log_path: Path, *args: str, ready: str) -> None:
        self.stack = stack
        self.log_path = log_path
        self.args = args
        self.ready = ready
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> None:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [NABOOM, *self.args], env={**self.stack.env(), **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )

        def started() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"naboom {' '.join(self.args)} exited with {self.proc.returncode}; see {self.log_path}")
            return self.ready in self.log_path.read_text(errors="replace")[offset:]

        wait_for_sync(started, timeout=60, what=f"naboom {' '.join(self.args)} to log {self.ready!r}")

    def log(self) -> str:
        """Everything the process has logged so far."""
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` and wait; a process still there after 30 s is killed (never left behind) and the test fails."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
                raise AssertionError(f"naboom {' '.join(self.args)} did not exit on signal {sig}; see {self.log_path}") from None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


class Server(Process):
    """``naboom serve`` as a real child process; started once its health check answers."""

    def __init__(self, stack: Stack, log_path: Path) -> None:
        super().__init__(stack, log_path, "serve", ready="")

    def start(self, env: dict[str, str] | None = None, wait_mqtt: bool = True) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [NABOOM, "serve"], env={**self.stack.env(), **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"naboom serve exited with {self.proc.returncode}; see {self.log_path}")
            try:
                r = httpx.get(f"{self.stack.base_url}/monitoring/health/", timeout=1)
            except httpx.HTTPError:
                return False
            return r.status_code == 200 or not wait_mqtt

        wait_for_sync(healthy, timeout=60, what="naboom serve to become healthy")


@contextmanager
def serving(stack: Stack, tmp_path_factory: Any, log_name: str = "serve.log") -> Iterator[Server]:
    """``naboom serve`` on ``stack``, healthy before the body runs, stopped after it."""
    srv = Server(stack, tmp_path_factory.mktemp("logs") / log_name)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def worker(stack: Stack, log_path: Path, *queues: str) -> Process:
    """``naboom worker`` for ``queues`` (both when none), not yet started."""
    args = [a for q in queues for a in ("--queue", q)]
    return Process(stack, log_path, "worker", *args, ready="worker for")


def scheduler(stack: Stack, log_path: Path) -> Process:
    """``naboom scheduler``, not yet started; it is ready once it leads or stands by."""
    return Process(stack, log_path, "scheduler", ready="scheduler ")


def sos(credentials: dict[str, Any], nonce: str | int | None = None, **fields: Any) -> dict[str, Any]:
    """A signed SOS for a device, fresh ``ts`` and a unique nonce unless given."""
    payload: dict[str, Any] = {
        "pid": credentials["pid"],
        "ts": int(time.time()),
        "nonce": nonce if nonce is not None else uuid.uuid4().hex,
        "msg": "SOS",
        "lat": -24.53,
        "lng": 28.71,
        "acc": 12.5,
        "kid": credentials["kid"],
    }
    payload.update(fields)
    return signed_payload(payload, credentials["secret"])


@contextmanager
def publisher(host: str, port: int) -> Iterator[paho.Client]:
    """A connected paho client that publishes at QoS 1 and waits for each PUBACK."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(100)
    client.connect(host, port)
    client.loop_start()
    try:
        yield client
    finally:
        client.loop_stop()
        client.disconnect()


def publish(client: paho.Client, topic: str, body: bytes | str | dict[str, Any]) -> None:
    """Publish at QoS 1 and block until the broker has it."""
    data = json.dumps(body) if isinstance(body, dict) else body
    info = client.publish(topic, data, qos=1)
    info.wait_for_publish(timeout=30)
    assert info.is_published()


def drop_mqtt_session(client_id: str, host: str = MQTT_HOST, port: int = MQTT_PORT) -> None:
    """Remove a persistent session (and its queue) from the broker."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    try:
        client.connect(host, port)
        client.disconnect()
    except OSError:
        pass


@asynccontextmanager
async def in_process_sessions(stack: Stack) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on ``stack``'s database for this process, with the stack's settings (its secret key
    decrypts device secrets). The caller restores the environment (pytest's monkeypatch)."""
    assert stack.database_url is not None
    for key, value in stack.env().items():
        if key.startswith("NABOOM_"):
            os.environ[key] = value
    get_settings.cache_clear()
    engine = create_async_engine(stack.database_url)
    try:
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()
        get_settings.cache_clear()
