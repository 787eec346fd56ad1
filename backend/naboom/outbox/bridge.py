"""The outbox bridge: drains unpublished outbox rows to MQTT at QoS 1, one active bridge per database."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import aiomqtt
import asyncpg
import httpx
import msgspec
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig

from naboom.ingest.mqtt import Backoff
from naboom.outbox import service
from naboom.outbox.publisher import Publisher
from naboom.settings import Settings

log = logging.getLogger(__name__)

# Outbound bodies as compact JSON, as they always were (msgspec keeps the payload's key order).
_encode = msgspec.json.Encoder().encode

# pg_try_advisory_lock key ("naboom" + 1); advisory locks are per database, so one bridge per installation.
LOCK_KEY = 0x6E61626F6F6D01
BATCH_SIZE = 1000
WEBHOOK_BATCH_SIZE = 200
PUBLISH_TIMEOUT_SECONDS = 10.0
# Published rows are kept this long (to see what went out), then deleted by the active bridge.
KEEP_PUBLISHED = timedelta(days=7)
PURGE_EVERY_SECONDS = 600.0
REFRESH_EVERY_SECONDS = 1.0
APPLICATION_NAME = "naboom-bridge"
WEBHOOK_TIMEOUT_SECONDS = 5.0
WEBHOOK_ROUND_SECONDS = 0.2
# A delivery is tried this many times (about 20 minutes with the back-off below), then given up.
WEBHOOK_MAX_ATTEMPTS = 10
WEBHOOK_RETRY_BASE_SECONDS = 1.0
WEBHOOK_RETRY_MAX_SECONDS = 300.0

Role = Literal["active", "standby", "stopped"]


class LeadershipLost(Exception):
    """The connection holding the advisory lock is gone, and with it the lock."""


class OutboxBridge:
    """Publishes outbox rows in id order; a row is marked published only after the broker's PUBACK."""

    def __init__(self, settings: Settings, db: SQLAlchemyAsyncConfig) -> None:
        self._settings = settings
        self._db = db
        self._poll = settings.bridge_poll_seconds
        self._wake = asyncio.Event()
        self._stopping = False
        self._halt = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.role: Role = "stopped"
        self.mqtt_connected = False
        self.heartbeat_at: float | None = None
        self.backlog = 0
        self.oldest: datetime | None = None
        self.published = 0
        self._next_purge = 0.0
        self._webhook_wake = asyncio.Event()
        # Webhook id -> monotonic time before which its queue waits (after a failed delivery).
        self._webhook_retry_at: dict[str, float] = {}
        self.webhooks_delivered = 0

    @property
    def client_id(self) -> str:
        return f"{self._settings.mqtt_client_id}-bridge"

    def status(self) -> dict[str, Any]:
        """What health checks and metrics report: role, backlog, its age, heartbeat age."""
        now = time.monotonic()
        heartbeat_age = None if self.heartbeat_at is None else round(now - self.heartbeat_at, 3)
        oldest_age = None if self.oldest is None else round(max(0.0, (datetime.now(UTC) - self.oldest).total_seconds()), 3)
        fresh = heartbeat_age is not None and heartbeat_age < max(15.0, 3 * self._poll)
        healthy = fresh and (self.role == "standby" or (self.role == "active" and self.mqtt_connected))
        return {
            "role": self.role,
            "healthy": healthy,
            "mqtt_connected": self.mqtt_connected,
            "backlog": self.backlog,
            "oldest_age_seconds": oldest_age,
            "heartbeat_age_seconds": heartbeat_age,
            "published": self.published,
        }

    # Running ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Run in the background of the current event loop."""
        self._task = asyncio.create_task(self.run(), name="outbox-bridge")

    async def stop(self, grace: float = 10.0) -> None:
        """Let the current batch finish (bounded by ``grace`` seconds), then stop."""
        self._stopping = True
        self._halt.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
            except Exception:
                log.exception("outbox bridge failed while stopping")
        self.role = "stopped"

    async def run(self) -> None:
        """Lead (or stand by) and publish until stopped; every failure is retried with back-off."""
        backoff = Backoff(base=0.5, cap=15.0)
        try:
            while not self._stopping:
                try:
                    if self._settings.embedded_database:
                        # One process owns an SQLite file: it is always the active bridge.
                        self.role = "active"
                        await self._lead(None)
                    else:
                        await self._run_postgres()
                    backoff.reset()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if self._stopping:
                        break
                    delay = backoff.next_delay()
                    log.warning("outbox bridge interrupted (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay)
                    await self._pause(delay, wake=False)
        finally:
            self.role = "stopped"
            self.mqtt_connected = False
            log.info("outbox bridge stopped")

    async def _run_postgres(self) -> None:
        dsn = self._settings.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        conn: asyncpg.Connection = await asyncpg.connect(dsn, server_settings={"application_name": APPLICATION_NAME})
        lost = asyncio.Event()

        def on_terminate(_: Any) -> None:
            lost.set()
            self._wake.set()

        conn.add_termination_listener(on_terminate)
        try:
            announced = False
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
                if self.role != "standby" or not announced:
                    log.info("outbox bridge standing by: another bridge holds the lock")
                    announced = True
                self.role = "standby"
                await self._refresh()
                await self._pause(self._poll, wake=False)
                if self._stopping:
                    return
            self.role = "active"
            # LISTEN belongs to this connection: after every reconnect it is issued again.
            await conn.add_listener(service.CHANNEL, lambda *_: self._wake_all())
            log.info("outbox bridge active: holding the lock and listening on %s", service.CHANNEL)
            await self._lead(_LockCheck(conn, lost))
        finally:
            if self.role == "active":
                self.role = "standby"
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)

    async def _lead(self, lock: _LockCheck | None) -> None:
        """Hold the MQTT connection (reconnecting with back-off) while the lock holds."""
        backoff = Backoff(base=0.5, cap=10.0)
        while not self._stopping:
            try:
                async with self._publisher() as publisher:
                    self.mqtt_connected = True
                    backoff.reset()
                    log.info("outbox bridge connected to MQTT as %s", self.client_id)
                    await self._pump(publisher, lock)
                    return
            except aiomqtt.MqttError as exc:
                self.mqtt_connected = False
                delay = backoff.next_delay()
                log.warning("outbox bridge: MQTT unavailable (%s); retrying in %.1fs", exc, delay)
            self.mqtt_connected = False
            # While the broker is away the backlog is still measured and the lock still watched.
            deadline = time.monotonic() + delay
            while not self._stopping and time.monotonic() < deadline:
                if lock is not None:
                    await lock.check()
                await self._refresh()
                # NOTIFYs cannot help while the broker is away: only the clock (or a stop) ends this wait.
                await self._pause(min(self._poll, max(0.05, deadline - time.monotonic())), wake=False)

    def _wake_all(self) -> None:
        self._wake.set()
        self._webhook_wake.set()

    async def _pump(self, publisher: Publisher, lock: _LockCheck | None) -> None:
        # Webhooks go out beside MQTT, never in its way: a slow or failing receiver delays only itself.
        webhooks = asyncio.create_task(self._webhooks(), name="outbox-webhooks")
        try:
            await self._pump_mqtt(publisher, lock)
        finally:
            webhooks.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await webhooks

    async def _pump_mqtt(self, publisher: Publisher, lock: _LockCheck | None) -> None:
        gone = publisher.gone
        self._wake.set()
        while not self._stopping:
            if lock is not None:
                await lock.check()
            if gone.done():
                raise aiomqtt.MqttError("connection to the broker lost")
            # Cleared before reading: a NOTIFY arriving during the drain wakes the next round.
            self._wake.clear()
            sent = await self._drain(publisher, None if lock is None else lock.conn)
            # Under load there is a round per ingest batch: the backlog is measured at most once
            # a second then, and at once when a round finds nothing (the idle bridge's heartbeat);
            # a skipped measurement shortens the next pause, so the figure is never long stale.
            stale = bool(sent) and self.heartbeat_at is not None
            if stale and time.monotonic() - (self.heartbeat_at or 0.0) >= REFRESH_EVERY_SECONDS:
                stale = False
            if not stale:
                await self._refresh()
            await self._purge()
            if sent < BATCH_SIZE:
                await self._pause(min(self._poll, REFRESH_EVERY_SECONDS) if stale else self._poll, gone)

    async def _drain(self, publisher: Publisher, conn: asyncpg.Connection | None) -> int:
        """Publish one batch, all of it in flight at once and sent in id order; mark what the broker took.

        On PostgreSQL the outbox is read and marked on ``conn``, the connection that holds the
        bridge's lock (no pool, no ORM); on SQLite through sessions.

        Waiting for each PUBACK before the next PUBLISH made every message wait for a turn of an
        event loop busy with the ingest (about a thousand a second in a storm, when every SOS
        needs its ack out quickly so the device stops retrying). The messages go out in order on
        one connection; those the broker acknowledged are marked published, the first one it did
        not is marked failed, and every unconfirmed one stays pending for the next round, after
        the reconnect (only then can a message overtake an earlier one).
        """
        if conn is not None:
            batch = await service.pending_on(conn, BATCH_SIZE)
        else:
            async with self._db.get_session() as session:
                batch = await service.pending(session, BATCH_SIZE)
        if not batch:
            return 0
        confirmed = await publisher.publish(
            [(message.topic, _encode(message.payload)) for message in batch], PUBLISH_TIMEOUT_SECONDS
        )
        done = [message.id for message, ok in zip(batch, confirmed, strict=True) if ok]
        failure: tuple[int, str] | None = None
        if len(done) < len(batch):
            first = next(message.id for message, ok in zip(batch, confirmed, strict=True) if not ok)
            failure = (first, f"no PUBACK within {PUBLISH_TIMEOUT_SECONDS:.0f}s, or the connection to the broker was lost")
        if conn is not None:
            await service.settle_on(conn, done, datetime.now(UTC), failure)
        else:
            async with self._db.get_session() as session:
                await service.mark_published(session, done, datetime.now(UTC))
                if failure is not None:
                    await service.mark_failed(session, *failure)
                await session.commit()
        if done:
            self.published += len(done)
            log.info("outbox bridge published %d messages", len(done))
        if failure is not None:
            raise aiomqtt.MqttError(f"publishing outbox message {failure[0]} failed: {failure[1]}")
        return len(done)

    async def _webhooks(self) -> None:
        """Deliver webhook rows until cancelled; every failure is retried on the next round."""
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS, follow_redirects=False) as http:
            self._webhook_wake.set()
            while not self._stopping:
                self._webhook_wake.clear()
                began = time.monotonic()
                try:
                    await self._deliver_webhooks(http)
                except Exception as exc:
                    log.warning("outbox bridge: webhook round failed (%s: %s)", type(exc).__name__, exc)
                waits = [t - time.monotonic() for t in self._webhook_retry_at.values()]
                timeout = max(0.05, min([self._poll, *waits]))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._webhook_wake.wait(), timeout)
                # Every ingest batch wakes this loop: under load, one look for webhook rows per
                # WEBHOOK_ROUND_SECONDS is enough (they are the slow path anyway).
                if (rest := began + WEBHOOK_ROUND_SECONDS - time.monotonic()) > 0:
                    await self._pause(rest, wake=False)

    async def _deliver_webhooks(self, http: httpx.AsyncClient) -> None:
        """One round: each webhook's queue in order, concurrently, stopping a queue at its first failure."""
        async with self._db.get_session() as session:
            batch = await service.pending_webhooks(session, WEBHOOK_BATCH_SIZE)
            hooks = await service.webhook_secrets(
                session, sorted({row.topic.removeprefix(service.WEBHOOK_PREFIX) for row in batch})
            )
        queues: dict[str, list[service.Pending]] = {}
        for row in batch:
            queues.setdefault(row.topic.removeprefix(service.WEBHOOK_PREFIX), []).append(row)
        now = time.monotonic()
        self._webhook_retry_at = {k: t for k, t in self._webhook_retry_at.items() if k in queues and t > now}
        ready = [(k, rows) for k, rows in queues.items() if k not in self._webhook_retry_at]
        await asyncio.gather(*(self._deliver_queue(http, key, rows, hooks.get(key)) for key, rows in ready))

    async def _deliver_queue(
        self, http: httpx.AsyncClient, key: str, rows: list[service.Pending], hook: tuple[str, str] | None
    ) -> None:
        for row in rows:
            error = "the webhook was removed or disabled" if hook is None else await self._post(http, row, *hook)
            async with self._db.get_session() as session:
                if error is None:
                    await service.mark_published(session, [row.id], datetime.now(UTC))
                elif hook is None or row.attempts + 1 >= WEBHOOK_MAX_ATTEMPTS:
                    await service.give_up(session, row.id, error, datetime.now(UTC))
                    log.warning("outbox bridge gave up webhook delivery %d for webhook %s: %s", row.id, key, error)
                else:
                    await service.mark_failed(session, row.id, error)
                await session.commit()
            if error is None:
                self.webhooks_delivered += 1
            elif hook is not None and row.attempts + 1 < WEBHOOK_MAX_ATTEMPTS:
                delay = min(WEBHOOK_RETRY_MAX_SECONDS, WEBHOOK_RETRY_BASE_SECONDS * 2**row.attempts)
                self._webhook_retry_at[key] = time.monotonic() + delay
                log.warning("outbox bridge: webhook %s failed (%s); retrying in %.0fs", key, error, delay)
                return

    async def _post(self, http: httpx.AsyncClient, row: service.Pending, url: str, secret: str) -> str | None:
        """POST one delivery, signed; None when the receiver answered 2xx, else what went wrong."""
        body = json.dumps(row.payload, separators=(",", ":")).encode()
        signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Naboom-Event": str(row.payload.get("type", "")),
            "X-Naboom-Delivery": str(row.id),
            "X-Naboom-Signature": f"sha256={signature}",
        }
        try:
            response = await http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    async def _refresh(self) -> None:
        """Measure the backlog; a successful query is the heartbeat."""
        async with self._db.get_session() as session:
            backlog = await service.backlog(session)
        self.backlog, self.oldest = backlog.count, backlog.oldest
        self.heartbeat_at = time.monotonic()

    async def _purge(self) -> None:
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_EVERY_SECONDS
        async with self._db.get_session() as session:
            removed = await service.purge_published(session, datetime.now(UTC) - KEEP_PUBLISHED)
            await session.commit()
        if removed:
            log.info("outbox bridge removed %d messages published more than %d days ago", removed, KEEP_PUBLISHED.days)

    async def _pause(self, seconds: float, gone: asyncio.Future[None] | None = None, *, wake: bool = True) -> None:
        """Until stopped, woken (a NOTIFY, when ``wake``), the broker connection drops, or ``seconds`` pass."""
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._halt.wait())]
        if wake:
            waiters.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait({*waiters, *([gone] if gone is not None else [])}, timeout=seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _publisher(self) -> Publisher:
        # Nothing to receive (a clean session): the outbox, not the broker, remembers what is still to send.
        return Publisher(self._settings.mqtt_target, self.client_id, keepalive=15, connect_timeout=PUBLISH_TIMEOUT_SECONDS)


class _LockCheck:
    """Whether the connection holding the advisory lock (and the LISTEN) is still alive."""

    def __init__(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        self._conn = conn
        self._lost = lost

    @property
    def conn(self) -> asyncpg.Connection:
        """The connection itself: the bridge reads and marks the outbox on it."""
        return self._conn

    async def check(self) -> None:
        if self._lost.is_set() or self._conn.is_closed():
            raise LeadershipLost("the bridge's database connection was closed")
        try:
            await asyncio.wait_for(self._conn.fetchval("SELECT 1"), 5)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise LeadershipLost(f"the bridge's database connection failed: {exc}") from exc


async def run_bridge_process(settings: Settings) -> None:
    """``naboom bridge``: the bridge alone, until SIGTERM or SIGINT (the current batch finishes first)."""
    import signal

    from naboom.db.config import database_config

    db = database_config(settings)
    bridge = OutboxBridge(settings, db)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    log.info("outbox bridge starting as %s", bridge.client_id)
    bridge.start()
    try:
        await stopped.wait()
    finally:
        await bridge.stop(settings.shutdown_timeout_seconds)
        engine = db.get_engine()
        await engine.dispose()
