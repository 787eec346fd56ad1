"""Helpers for the ingest acceptance tests: the admin's view of the ingest and the database's truth."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.support import Stack, psql, wait_for, wait_for_sync


def random_secret() -> str:
    """A secret the server has never seen, base64 like real ones."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def sql_literal(value: str) -> str:
    """A quoted SQL string literal (test values only)."""
    return "'" + value.replace("'", "''") + "'"


@dataclass
class Admin:
    """An admin's view of the ingest over the real HTTP API."""

    stack: Stack
    token: str

    @classmethod
    def create(cls, stack: Stack) -> Admin:
        return cls(stack, stack.admin())

    def stats(self) -> dict[str, Any]:
        return dict(self.stack.get("/api/ingest/stats", self.token))

    def rejected(self, reason: str) -> int:
        return int(self.stats()["rejected"].get(reason, 0))

    def duplicates(self) -> int:
        return int(self.stats()["duplicates"])

    def incident_total(self) -> int:
        return int(self.stack.get("/api/incidents", self.token, limit=1)["total"])

    def rejections(self, reason: str, pid: str | None = None, topic: str | None = None) -> list[dict[str, Any]]:
        """Rows of the rejection log for a reason, by pid (server-side filter) and/or topic."""
        params: dict[str, Any] = {"reason": reason, "limit": 500}
        if pid is not None:
            params["pid"] = pid
        rows = list(self.stack.get("/api/ingest/rejections", self.token, **params)["items"])
        if topic is not None:
            rows = [r for r in rows if r["topic"] == topic]
        return rows


def incidents_of(stack: Stack, pid: str) -> int:
    """Incidents stored for a device (the database's truth, not a cache)."""
    assert stack.database_url is not None
    return int(psql(stack.database_url, f"SELECT count(*) FROM incident WHERE device_pid = {sql_literal(pid)}"))


def nonce_counts(stack: Stack, pid: str) -> dict[str, int]:
    """How many incidents each nonce of a device produced (from each incident's first event)."""
    assert stack.database_url is not None
    out = psql(
        stack.database_url,
        "SELECT e.payload->>'nonce', count(DISTINCT i.id) FROM incident i JOIN incident_event e "
        f"ON e.incident_id = i.id AND e.type = 'sos' WHERE i.device_pid = {sql_literal(pid)} GROUP BY 1",
    )
    counts: dict[str, int] = {}
    for line in filter(None, out.splitlines()):
        nonce, _, count = line.rpartition("|")
        counts[nonce] = int(count)
    return counts


def receipts_of(stack: Stack, pid: str) -> int:
    """De-duplication receipts stored for a device."""
    assert stack.database_url is not None
    pattern = sql_literal(pid.replace("_", r"\_").replace("%", r"\%") + ":%")
    return int(psql(stack.database_url, f"SELECT count(*) FROM sos_receipt WHERE key LIKE {pattern}"))


def assert_no_signature(row: dict[str, Any], sig: str) -> None:
    """A rejection-log row holds neither the signature value nor a ``sig`` key."""
    assert sig not in json.dumps(row), f"signature leaked into the rejection log: {row}"
    excerpt = row.get("excerpt")
    if excerpt:
        assert sig not in excerpt
        try:
            parsed = json.loads(excerpt)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            assert "sig" not in parsed, f"excerpt keeps a sig key: {excerpt}"


@dataclass
class CrashingStream:
    """Streams SOS at QoS 1 from a background thread and fires ``on_trigger`` (a SIGKILL) mid-stream.

    After sending each ``chunk`` (before the broker confirms it) and again once it is confirmed,
    the thread counts the device's stored incidents over its own database connection. It stays at
    most ``window`` messages ahead of the ingest, and the first time at least ``trigger_at`` are
    stored while more were sent than stored (the ingest is busy with the rest) it calls
    ``on_trigger`` at once, from this thread, and goes on publishing the remainder without waiting:
    the kill lands on a moving stream. The count right after sending matters: an ingest that
    commits faster than the broker confirms would otherwise have caught up at every check.
    """

    host: str
    port: int
    topic: str
    bodies: list[dict[str, Any]]
    database_url: str
    pid: str
    trigger_at: int
    on_trigger: Callable[[], None]
    window: int = 200
    chunk: int = 50
    published: int = 0
    published_at_trigger: int | None = None
    stored_at_trigger: int | None = None
    triggered: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sos-stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            asyncio.run(self._stream())
        except BaseException as exc:  # reported to the test thread by join()
            self.error = exc
        finally:
            self.triggered.set()

    async def _stream(self) -> None:
        db = await asyncpg.connect(self.database_url.replace("postgresql+asyncpg://", "postgresql://"))
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-stream-{uuid.uuid4().hex[:8]}")
        client.max_inflight_messages_set(self.chunk)
        client.connect(self.host, self.port)
        client.loop_start()
        try:
            for start in range(0, len(self.bodies), self.chunk):
                infos = [client.publish(self.topic, json.dumps(b), qos=1) for b in self.bodies[start:start + self.chunk]]
                if not self.triggered.is_set():
                    await self._fire_if_due(db, sent=start + len(infos))
                for info in infos:
                    info.wait_for_publish(timeout=60)
                    if not info.is_published():
                        raise AssertionError(f"broker did not confirm a message after {self.published}")
                    self.published += 1
                if not self.triggered.is_set():
                    await self._pace(db)
        finally:
            client.loop_stop()
            client.disconnect()
            await db.close()

    async def _pace(self, db: asyncpg.Connection) -> None:
        """Fire the trigger when due; otherwise wait until the ingest is less than ``window`` behind."""

        async def due_or_room() -> bool:
            stored = await self._fire_if_due(db, sent=self.published)
            return self.triggered.is_set() or self.published - stored < self.window

        await wait_for(due_or_room, timeout=60, what=f"the ingest to come within {self.window} of the stream")

    async def _fire_if_due(self, db: asyncpg.Connection, sent: int) -> int:
        """Fire the trigger when ``trigger_at`` are stored, fewer than ``sent``, and more remain to send."""
        stored = int(await db.fetchval("SELECT count(*) FROM incident WHERE device_pid = $1", self.pid))
        if stored >= self.trigger_at and sent > stored and sent < len(self.bodies):
            self.on_trigger()
            self.published_at_trigger, self.stored_at_trigger = sent, stored
            self.triggered.set()
        return stored

    def join(self, timeout: float = 120) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "publisher thread did not finish"
        if self.error is not None:
            raise AssertionError(f"publisher failed after {self.published} messages") from self.error


def wait_for_incidents(stack: Stack, pid: str, count: int, timeout: float = 60) -> None:
    """Block until a device has at least ``count`` incidents."""
    wait_for_sync(lambda: incidents_of(stack, pid) >= count, timeout=timeout, what=f"{count} incidents of {pid}")


def all_once(counts: dict[str, int], nonces: Iterable[str]) -> tuple[set[str], dict[str, int]]:
    """Missing nonces and nonces stored more than once."""
    expected = set(nonces)
    missing = expected - counts.keys()
    doubled = {n: c for n, c in counts.items() if c != 1}
    return missing, doubled
