"""Graceful stop, start-up waits, the topic allowlist and request ids (real PostgreSQL, Redis, Mosquitto).

On SIGTERM the ingest stops taking messages, commits and acknowledges the batch it holds and
disconnects cleanly; whatever the broker delivered but nobody acknowledged stays in the
persistent session. The proof is the broker's own view: after a restart every published SOS is
stored exactly once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.integration.ingest_helpers import Admin, all_once, nonce_counts
from tests.integration.live import open_stream
from tests.support import (
    NABOOM,
    Server,
    Stack,
    drop_mqtt_session,
    free_port,
    publish,
    publisher,
    sos,
    unique_pid,
    unique_region,
    wait_for_sync,
)

SHUTDOWN_TIMEOUT = 10
# uvicorn closes live HTTP connections after 3 s, then the lifespan gives the ingest its bound.
STOP_BOUND = 3 + SHUTDOWN_TIMEOUT + 5


@pytest.fixture(scope="module")
def stack(real_stack: Stack) -> Stack:
    return dataclasses.replace(
        real_stack,
        extra={
            **real_stack.extra,
            "NABOOM_LOG_FORMAT": "json",
            "NABOOM_SOS_ATTACH_WINDOW_SECONDS": "0",
            "NABOOM_SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT),
        },
    )


@pytest.fixture(scope="module")
def server(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(stack, tmp_path_factory.mktemp("lifecycle") / "serve.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def running(server: Server) -> Iterator[Server]:
    """The module's server, started again if a test left it stopped."""
    if server.proc is None or server.proc.poll() is not None:
        server.proc = None
        server.start()
    yield server


def _json_lines(text: str) -> list[dict[str, Any]]:
    entries = []
    for line in text.splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    return entries


def _graceful_stop(server: Server) -> tuple[float, list[dict[str, Any]]]:
    """SIGTERM; returns how long the stop took and the JSON log lines it wrote."""
    assert server.proc is not None
    offset = server.log_path.stat().st_size
    began = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=60)
    took = time.monotonic() - began
    server.proc = None
    return took, _json_lines(server.log_path.read_text(errors="replace")[offset:])


def _index(entries: list[dict[str, Any]], text: str) -> int:
    found = [i for i, e in enumerate(entries) if text in e["message"]]
    assert found, f"no log line with {text!r} in {[e['message'] for e in entries]}"
    return found[0]


def _wait_stored(server: Server, pid: str, nonce: str) -> None:
    wait_for_sync(lambda: nonce_counts(server.stack, pid).get(nonce), timeout=60, what=f"SOS {nonce} to be stored")


class Stream(threading.Thread):
    """A device publishing SOS at QoS 1 in a steady stream until told to stop."""

    def __init__(self, stack: Stack, device: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.stack, self.device = stack, device
        self.nonces: list[str] = []
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with publisher(*self.stack.mqtt_address) as client:
                while not self.halt.is_set():
                    payload = sos(self.device)
                    publish(client, f"panic/ingest/{self.device['pid']}", payload)
                    self.nonces.append(payload["nonce"])
                    # A steady stream, not a flood: the broker keeps at most 1000 messages for an
                    # offline session, and the server is down for a while here.
                    self.halt.wait(0.005)
        except BaseException as exc:
            self.error = exc


def test_sigterm_during_a_stream_of_sos_commits_every_acknowledged_message_exactly_once(running: Server) -> None:
    stack = running.stack
    device = stack.create_device(unique_pid("stream"), unique_region())
    pid = device["pid"]
    stream = Stream(stack, device)
    stream.start()
    try:
        wait_for_sync(lambda: len(nonce_counts(stack, pid)) >= 30, timeout=60, what="the stream to be flowing")
        took, entries = _graceful_stop(running)
        # The stream goes on while the server is away: those messages wait in its session.
        published = len(stream.nonces)
        wait_for_sync(lambda: len(stream.nonces) >= published + 20, timeout=30, what="SOS published while down")
    finally:
        stream.halt.set()
        stream.join(timeout=30)
    assert stream.error is None, stream.error
    nonces = list(stream.nonces)

    assert took < STOP_BOUND, f"stopping took {took:.1f}s"
    stopped = _index(entries, "ingest stopping: no longer taking messages")
    committed = _index(entries, "held batch of")
    disconnected = _index(entries, "ingest disconnected cleanly")
    assert stopped < committed < disconnected
    assert not [e for e in entries if "did not stop within" in e["message"]]

    running.start()
    marker = sos(device, nonce=f"marker-{uuid.uuid4().hex}")
    with publisher(*stack.mqtt_address) as client:
        publish(client, f"panic/ingest/{pid}", marker)
    _wait_stored(running, pid, marker["nonce"])
    counts = nonce_counts(stack, pid)
    missing, doubled = all_once(counts, [*nonces, marker["nonce"]])
    assert not missing, f"{len(missing)} of {len(nonces)} SOS were lost"
    assert not doubled, f"stored more than once: {doubled}"


async def test_sigterm_ends_live_streams_cleanly_so_monitors_reconnect_at_once(running: Server) -> None:
    stack = running.stack
    region, _device, token = stack.new_region()
    ws_url = stack.base_url.replace("http://", "ws://") + f"/ws/alerts/{region}/?token={token}"
    async with open_stream(stack.base_url, token, region) as sse, websockets.connect(ws_url) as ws:
        lines = sse.aiter_lines()
        assert await anext(lines) == "retry: 3000"
        assert running.proc is not None
        offset = running.log_path.stat().st_size
        proc = running.proc
        proc.send_signal(signal.SIGTERM)
        try:
            # A stream cut off by the server's final timeout would end mid-body (httpx raises on a
            # chunked body without its last chunk); an ended one completes.
            rest = [line async for line in lines]
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        finally:
            # Stopped either way: the next test starts it again (``running``) instead of finding it dying.
            await asyncio.to_thread(proc.wait, 60)
            running.proc = None
    assert ": connected" in rest
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1012, "reconnect")
    logged = running.log_path.read_text(errors="replace")[offset:]
    assert "Exception in ASGI application" not in logged
    assert "Traceback" not in logged


def test_a_topic_outside_the_allowlist_is_rejected_counted_and_acknowledged(running: Server) -> None:
    stack = running.stack
    admin = Admin.create(stack)
    device = stack.create_device(unique_pid("allow"), unique_region())
    bad_topic = f"panic/ingest/not a pid {uuid.uuid4().hex[:8]}"
    before = admin.rejected("topic_not_allowed")
    with publisher(*stack.mqtt_address) as client:
        publish(client, bad_topic, sos(device))
    wait_for_sync(lambda: admin.rejections("topic_not_allowed", topic=bad_topic), timeout=30, what="the rejection")
    assert admin.rejected("topic_not_allowed") == before + 1

    # Acknowledged, so not delivered again after a restart (the marker proves the queue was read).
    _graceful_stop(running)
    running.start()
    marker = sos(device, nonce=f"marker-{uuid.uuid4().hex}")
    with publisher(*stack.mqtt_address) as client:
        publish(client, f"panic/ingest/{device['pid']}", marker)
    _wait_stored(running, device["pid"], marker["nonce"])
    # The rejection log is the durable record (the counters start again with the process).
    assert len(admin.rejections("topic_not_allowed", topic=bad_topic)) == 1


def test_http_requests_carry_a_request_id_in_the_response_and_the_json_log(running: Server) -> None:
    url = f"{running.stack.base_url}/schema/openapi.json"
    given = f"req-{uuid.uuid4().hex}"
    assert httpx.get(url, headers={"X-Request-ID": given}).headers["x-request-id"] == given
    made = httpx.get(url).headers["x-request-id"]
    assert made and made != given
    # A client's id is only kept when it is plain: it ends up in the logs.
    assert httpx.get(url, headers={"X-Request-ID": "a b\tc"}).headers["x-request-id"] != "a b\tc"

    def logged() -> list[dict[str, Any]]:
        return [e for e in _json_lines(running.log()) if e.get("request_id") == given]

    lines = wait_for_sync(logged, timeout=10, what="the access log line with the request id")
    assert {"time", "level", "logger", "message"} <= lines[0].keys()


class Proxy:
    """A TCP forwarder to PostgreSQL that starts listening only when told to."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None

    def open(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _via_port(url: str, port: int) -> str:
    head, _, rest = url.partition("@")
    _, _, db = rest.partition("/")
    return f"{head}@127.0.0.1:{port}/{db}"


def test_serve_waits_for_a_database_that_comes_up_later_then_serves(stack: Stack, tmp_path: Path) -> None:
    assert stack.database_url is not None
    host, _, rest = stack.database_url.partition("@")[2].partition(":")
    proxy = Proxy((host, int(rest.split("/")[0])))
    late = dataclasses.replace(
        stack, http_port=free_port(), client_id=f"naboom-test-{uuid.uuid4().hex[:8]}",
        database_url=_via_port(stack.database_url, proxy.port),
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen([NABOOM, "serve"], env=late.env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        waiting = f"waiting for the database at 127.0.0.1:{proxy.port} (attempt 2)"
        wait_for_sync(lambda: waiting in log_path.read_text(), timeout=30, what="the waiting log lines")
        assert proc.poll() is None
        proxy.open()

        def serving() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"{late.base_url}/schema/openapi.json", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for_sync(serving, timeout=60, what="the server to serve once the database answers")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        proxy.close()
        drop_mqtt_session(late.client_id, *late.mqtt_address)


def test_serve_exits_with_a_clear_message_when_the_database_never_answers(stack: Stack) -> None:
    assert stack.database_url is not None
    port = free_port()
    env = {
        **dataclasses.replace(stack, database_url=_via_port(stack.database_url, port)).env(),
        "NABOOM_STARTUP_TIMEOUT_SECONDS": "2",
    }
    out = subprocess.run([NABOOM, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert f"waiting for the database at 127.0.0.1:{port} (attempt 1)" in out.stderr
    assert f"error: the database at 127.0.0.1:{port} did not answer in time" in out.stderr
    assert "Traceback" not in out.stderr
