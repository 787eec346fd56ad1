"""``GET /monitoring/health/`` and ``naboom health`` against real PostgreSQL, Redis and a Mosquitto of the test's own."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from naboom.background.broker import open_work
from naboom.operations.tasks import critical_heartbeat, general_heartbeat
from naboom.settings import Settings
from tests.support import NABOOM, Server, Stack, free_port, sos, wait_for, wait_for_sync

pytestmark = pytest.mark.timeout(120)


class Broker:
    """A Mosquitto of this module's own, so stopping it disturbs nobody else."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["mosquitto", "-p", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    b = Broker()
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def served(real_stack: Stack, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    stack = dataclasses.replace(real_stack, mqtt_url=f"mqtt://127.0.0.1:{broker.port}", http_port=free_port())
    srv = Server(stack, tmp_path_factory.mktemp("logs") / "serve.log")
    srv.start()
    yield srv
    srv.stop()


def _health(stack: Stack) -> httpx.Response:
    return httpx.get(f"{stack.base_url}/monitoring/health/", timeout=10)


def _cli_health(stack: Stack) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NABOOM, "health"], env=stack.env(), capture_output=True, text=True, timeout=60)


def test_healthy_server_answers_200_with_every_part(served: Server) -> None:
    r = _health(served.stack)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["mqtt"] == {"connected": True}
    parts = body["parts"]
    for name in ("database", "redis", "mqtt", "ingest", "bridge"):
        assert parts[name]["ok"] is True and parts[name]["required"] is True, parts[name]
    # Informational parts are reported even when no worker or scheduler runs beside this server.
    assert parts["workers"]["required"] is False
    assert set(parts["workers"]["queues"]) == {"critical", "general"}
    assert parts["scheduler"]["required"] is False and parts["scheduler"]["mode"] == "redis"
    assert parts["sms"]["breakers"]


def test_cli_health_prints_the_same_and_exits_zero_when_healthy(served: Server) -> None:
    out = _cli_health(served.stack)
    assert out.returncode == 0, out.stderr
    assert '"status": "ok"' in out.stdout


async def test_broker_down_makes_health_503_with_mqtt_and_bridge_backlog_then_recovers(
    served: Server, broker: Broker
) -> None:
    _, device, _ = served.stack.new_region()
    broker.stop()
    try:
        r = await wait_for(lambda: (r := _health(served.stack)).status_code == 503 and r, what="health to say 503")
        body = r.json()
        assert body["status"] == "degraded"
        assert body["parts"]["mqtt"]["ok"] is False
        assert body["mqtt"] == {"connected": False}
        assert body["parts"]["database"]["ok"] is True
        # An SOS over HTTPS is still taken; its acknowledgement waits in the outbox.
        assert served.stack.submit(sos(device)).status_code == 201
        bridge = await wait_for(
            lambda: (b := _health(served.stack).json()["parts"]["bridge"])["backlog"] >= 1 and b,
            what="the bridge's backlog in the health answer",
        )
        assert bridge["ok"] is False and bridge["required"] is True
        out = _cli_health(served.stack)
        assert out.returncode == 1
        assert '"status": "degraded"' in out.stdout
    finally:
        broker.start()
    await wait_for(lambda: _health(served.stack).status_code == 200, timeout=60, what="health back to 200")
    await wait_for(
        lambda: _health(served.stack).json()["parts"]["bridge"]["backlog"] == 0, timeout=60, what="the backlog drained"
    )


def test_redis_gone_makes_health_503_with_redis_not_ok(
    real_stack: Stack, broker: Broker, tmp_path: Path
) -> None:
    # A Redis of the test's own: the server starts against it, then it goes away.
    port = free_port()
    redis_proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack = dataclasses.replace(
        real_stack,
        mqtt_url=f"mqtt://127.0.0.1:{broker.port}",
        http_port=free_port(),
        redis_url=f"redis://127.0.0.1:{port}/0",
        # its own MQTT session: the module's server keeps its own
        client_id=f"{real_stack.client_id}-r",
    )
    srv = Server(stack, tmp_path / "serve.log")
    try:
        srv.start()
        assert _health(stack).json()["parts"]["redis"]["ok"] is True
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        r = wait_for_sync(lambda: (r := _health(stack)).status_code == 503 and r, what="health to say 503")
        redis_part = r.json()["parts"]["redis"]
        assert redis_part["ok"] is False and redis_part["required"] is True
        assert redis_part["error"]
        assert _cli_health(stack).returncode == 1
    finally:
        srv.stop()
        if redis_proc.poll() is None:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)


def test_cli_health_exits_two_when_the_api_is_not_running(real_stack: Stack) -> None:
    stack = dataclasses.replace(real_stack, http_port=free_port())
    out = _cli_health(stack)
    assert out.returncode == 2
    assert '"status": "down"' in out.stdout


async def test_worker_heartbeats_make_the_workers_part_ok(served: Server) -> None:
    # The heartbeat tasks run here as a worker would run them, on the server's Redis.
    async with open_work(Settings.from_env(served.stack.env())) as work:
        await critical_heartbeat(work.context)
        await general_heartbeat(work.context)
    workers = _health(served.stack).json()["parts"]["workers"]
    assert workers["ok"] is True
    for queue in ("critical", "general"):
        assert workers["queues"][queue]["ok"] is True
        assert workers["queues"][queue]["heartbeat_age_seconds"] < 60
