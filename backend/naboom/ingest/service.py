"""Verification and storage of SOS messages: one code path for MQTT and HTTP."""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import msgspec
from sqlalchemy import String, bindparam, delete, func, insert, select, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.db import models as m
from naboom.db.inserts import asyncpg_connection, insert_ignore, table_of
from naboom.incidents.schemas import Change, IncidentOut
from naboom.incidents.service import ACTIVE_STATUSES
from naboom.ingest.schemas import (
    Envelope,
    IngestStats,
    Outcome,
    Reason,
    Rejection,
    RejectionCount,
    SosPayload,
    Verdict,
)
from naboom.ingest.signing import body_signature_matches, canonical_body
from naboom.schemas import Page

if TYPE_CHECKING:
    from advanced_alchemy.types import EncryptedString

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096
MAX_MESSAGE_CHARS = 280
_decoder = msgspec.json.Decoder()
# The shape a device's pid may have (as `naboom device create` enforces it).
_PID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

Broadcast = Callable[[list[dict[str, Any]]], Awaitable[None]]

# PostgreSQL bulk statements: one fixed text each (prepared once), whole columns as arrays.
_PG_RECEIPTS = """
INSERT INTO sos_receipt (key, digest, incident_id, received_at)
SELECT u.key, u.digest, u.incident_id, $4 FROM unnest($1::varchar[], $2::varchar[], $3::uuid[]) AS u(key, digest, incident_id)
ON CONFLICT DO NOTHING RETURNING key
"""
# created_at/updated_at: when the INSERT runs, inside the batch's transaction (as the ORM default would).
_PG_INCIDENTS = """
INSERT INTO incident (id, region, source, device_id, device_pid, message, lat, lng, accuracy, device_ts,
                      received_at, status, sos_count, last_sos_at, created_at, updated_at)
SELECT u.*, clock_timestamp(), clock_timestamp()
FROM unnest($1::uuid[], $2::varchar[], $3::varchar[], $4::uuid[], $5::varchar[], $6::varchar[], $7::float8[],
            $8::float8[], $9::float8[], $10::timestamptz[], $11::timestamptz[], $12::varchar[], $13::int[],
            $14::timestamptz[]) AS u
"""
# In input order, so event ids follow the messages' order as before.
_PG_EVENTS = """
INSERT INTO incident_event (incident_id, type, payload, actor, created_at)
SELECT u.incident_id, u.type, u.payload::jsonb, u.actor, u.created_at
FROM unnest($1::uuid[], $2::varchar[], $3::text[], $4::varchar[], $5::timestamptz[])
     WITH ORDINALITY AS u(incident_id, type, payload, actor, created_at, n)
ORDER BY u.n
"""
_INCIDENT_COLUMNS = (
    "id", "region", "source", "device_id", "device_pid", "message", "lat", "lng", "accuracy", "device_ts",
    "received_at", "status", "sos_count", "last_sos_at",
)
# The batch's devices and their keys; one fixed text whatever the number of pids (an IN list is a new
# statement, prepared anew, for every batch size).
_PG_DEVICES = """
SELECT d.id, d.pid, d.region, d.active, k.kid, k.secret, k.state, k.grace_until
FROM device d LEFT JOIN device_key k ON k.device_id = d.id
WHERE d.pid = ANY($1::varchar[])
"""
# What an incident the batch may attach to needs, locked in id order (see IngestService._attachable).
_ATTACH_COLUMNS = (
    "id", "device_id", "region", "status", "source", "device_pid", "message", "lat", "lng", "accuracy",
    "device_ts", "received_at", "sos_count", "last_sos_at", "acknowledged_at", "acknowledged_by",
    "ack_seconds", "dispatched_at", "vehicle_id", "closed_at", "closed_by",
)
_PG_ATTACHABLE = f"""
SELECT {", ".join(_ATTACH_COLUMNS)} FROM incident
WHERE device_id = ANY($1::uuid[]) AND status = ANY($2::varchar[]) AND coalesce(last_sos_at, received_at) >= $3
ORDER BY id FOR UPDATE
"""
# One row per device in id order: executed in that order, the rows are locked as every other batch locks them.
_PG_DEVICE_HEARD = "UPDATE device SET last_seen_at = $1, last_message = $2 WHERE id = $3"
# The incidents the batch added to: one row each (locked already by the attachable query).
_ATTACH_PARAMS = ("b_id", "b_lat", "b_lng", "b_acc", "b_count", "b_last", "b_now")
_PG_ATTACH = """
UPDATE incident SET lat = $2, lng = $3, accuracy = $4, sos_count = $5, last_sos_at = $6, updated_at = $7 WHERE id = $1
"""
_ACTIVE = [str(status) for status in ACTIVE_STATUSES]
# Decrypted device secrets by their stored ciphertext: a rotated key is a new ciphertext, so it
# counts at once; bounded, as the number of keys in the field is.
SECRET_CACHE_SIZE = 100_000


def _uuid(value: Any) -> uuid.UUID | None:
    """asyncpg's own UUID type as the standard one (msgspec and comparisons with ours expect it)."""
    return None if value is None else value if type(value) is uuid.UUID else uuid.UUID(bytes=value.bytes)


def _attachable_incident(row: Any) -> tuple[uuid.UUID, IncidentOut]:
    """``(device id, incident)`` of one row of the attachable query (asyncpg record or SQLAlchemy mapping)."""
    device_id = _uuid(row["device_id"])
    assert device_id is not None
    incident = IncidentOut(
        id=_uuid(row["id"]),  # type: ignore[arg-type]
        region=row["region"],
        status=row["status"],
        source=row["source"],
        device=row["device_pid"],
        msg=row["message"],
        lat=row["lat"],
        lng=row["lng"],
        acc=row["accuracy"],
        ts=row["device_ts"],
        created_at=row["received_at"],
        sos_count=row["sos_count"],
        last_sos_at=row["last_sos_at"],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
        ack_seconds=row["ack_seconds"],
        dispatched_at=row["dispatched_at"],
        vehicle_id=_uuid(row["vehicle_id"]),
        closed_at=row["closed_at"],
        closed_by=row["closed_by"],
    )
    return device_id, incident


class Rejected(Exception):
    """A message failed one check of CONTRACT §1."""

    def __init__(self, reason: Reason, detail: str, pid: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.pid = pid


@dataclass(frozen=True, slots=True)
class _Key:
    """A device key as verification needs it (the secret decrypted)."""

    kid: int
    secret: str
    state: str
    grace_until: datetime | None


@dataclass(slots=True)
class _Device:
    """What verification and storage read of a device: one Core query per batch, no ORM objects."""

    id: uuid.UUID
    pid: str
    region: str
    active: bool
    keys: list[_Key] = field(default_factory=list)


@dataclass(slots=True)
class _Checked:
    """A message that passed every check but de-duplication."""

    index: int
    envelope: Envelope
    payload: SosPayload
    device: _Device
    key: str
    digest: str
    # The incident this message opens, should it be the device's first one (also its receipt's id until planned).
    new_id: uuid.UUID = field(default_factory=uuid.uuid4)
    incident_id: uuid.UUID | None = None


@dataclass(slots=True)
class IngestCounters:
    """What this process has decided since it started."""

    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class IngestPolicy:
    """The time rules of acceptance, and how long a device's incident takes its further SOS.

    A repeated SOS attaches to its device's incident while that is not closed and the device's
    last SOS is at most ``sos_attach_window`` old; zero turns attaching off.
    """

    dedup_window: timedelta
    future_skew: timedelta
    rejection_log_max_rows: int
    sos_attach_window: timedelta = timedelta(minutes=30)
    # MQTT topics accepted: ``{topic_prefix}/{pid}`` with a well-formed pid; None accepts any topic.
    topic_prefix: str | None = None


@dataclass(slots=True)
class Stored:
    """What a committed batch changed, to broadcast: each incident once, in its state at commit."""

    created: list[IncidentOut] = field(default_factory=list)
    # incidents that took further SOS, with the newest of them (None: not known, see MqttIngest)
    updated: list[tuple[IncidentOut, Change | None]] = field(default_factory=list)

    def __iter__(self) -> Iterator[IncidentOut]:
        """Every incident the batch touched, new ones first."""
        yield from self.created
        yield from (incident for incident, _ in self.updated)


def _parse(envelope: Envelope, topic_prefix: str | None = None) -> tuple[SosPayload, dict[str, Any]]:
    """An allowed topic, well-formed JSON and schema, then the topic's pid."""
    if envelope.topic is not None and topic_prefix is not None:
        prefix, _, topic_pid = envelope.topic.rpartition("/")
        if prefix != topic_prefix or not _PID.match(topic_pid):
            raise Rejected(Reason.TOPIC_NOT_ALLOWED, f"topic {envelope.topic[:100]!r} is not {topic_prefix}/<pid>")
    if len(envelope.body) > MAX_BODY_BYTES:
        raise Rejected(Reason.MALFORMED_JSON, f"payload is {len(envelope.body)} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        raw = _decoder.decode(envelope.body)
    except msgspec.DecodeError as exc:
        raise Rejected(Reason.MALFORMED_JSON, f"payload is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise Rejected(Reason.MALFORMED_JSON, "payload must be one JSON object")
    pid = raw.get("pid") if isinstance(raw.get("pid"), str) else None
    try:
        payload = msgspec.convert(raw, SosPayload)
    except msgspec.ValidationError as exc:
        raise Rejected(Reason.INVALID_SCHEMA, str(exc), pid) from None
    if (payload.lat is None) != (payload.lng is None):
        raise Rejected(Reason.INVALID_SCHEMA, "lat and lng must be given together", pid)
    if envelope.topic is not None:
        topic_pid = envelope.topic.rsplit("/", 1)[-1]
        if topic_pid != payload.pid:
            raise Rejected(Reason.TOPIC_MISMATCH, f"topic is for {topic_pid!r} but payload pid is {payload.pid!r}", pid)
    # The raw values, exactly as sent, make the canonical body (ints stay ints, floats keep their repr).
    return payload, raw


def _check_device(payload: SosPayload, body: bytes, device: _Device | None, now: datetime) -> _Device:
    """Device known and active, key usable, signature right (over the canonical ``body``)."""
    if device is None:
        raise Rejected(Reason.UNKNOWN_DEVICE, f"no device {payload.pid!r}", payload.pid)
    if not device.active:
        raise Rejected(Reason.INACTIVE_DEVICE, f"device {payload.pid!r} is deactivated", payload.pid)
    key = next((k for k in device.keys if k.kid == payload.kid), None)
    if key is None:
        raise Rejected(Reason.UNKNOWN_KID, f"device {payload.pid!r} has no key {payload.kid}", payload.pid)
    if key.state == m.KeyState.REVOKED:
        raise Rejected(Reason.REVOKED_KID, f"key {payload.kid} of {payload.pid!r} is revoked", payload.pid)
    if key.state == m.KeyState.GRACE and (key.grace_until is None or key.grace_until <= now):
        raise Rejected(Reason.REVOKED_KID, f"key {payload.kid} of {payload.pid!r} was rotated out", payload.pid)
    if not body_signature_matches(body, key.secret, payload.sig):
        raise Rejected(Reason.BAD_SIGNATURE, "signature does not match the canonical body", payload.pid)
    return device


def _check_time(payload: SosPayload, now: datetime, policy: IngestPolicy) -> None:
    """``ts`` inside the de-duplication window and not too far ahead."""
    ts = payload.ts
    if ts < (now - policy.dedup_window).timestamp():
        raise Rejected(Reason.STALE_TS, f"ts {ts} is older than the {policy.dedup_window} window", payload.pid)
    if ts > (now + policy.future_skew).timestamp():
        raise Rejected(Reason.FUTURE_TS, f"ts {ts} is more than {policy.future_skew} in the future", payload.pid)


# A "sig" value in text that is not one JSON object (broken JSON, arrays): quoted, possibly cut off, or bare.
_SIG_IN_TEXT = re.compile(r'("sig"\s*:\s*)(?:"(?:[^"\\]|\\.)*"?|[^,}\]\s]*)')


def _excerpt(body: bytes) -> str:
    """A readable slice of a refused payload with any signature removed."""
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return _SIG_IN_TEXT.sub(r'\1"<removed>"', body[:MAX_BODY_BYTES].decode("utf-8", "replace"))[:300]
    if isinstance(raw, dict):
        raw.pop("sig", None)
        return msgspec.json.encode(raw)[:1000].decode("utf-8", "replace")
    return _SIG_IN_TEXT.sub(r'\1"<removed>"', msgspec.json.encode(raw).decode("utf-8", "replace"))[:1000]


def _message(payload: SosPayload) -> str:
    return (payload.msg or "SOS")[:MAX_MESSAGE_CHARS]


def _change(item: _Checked) -> Change:
    """The ``sos`` timeline event of an accepted message."""
    p = item.payload
    return Change(
        type="sos",
        actor=f"device:{p.pid}",
        at=item.envelope.received_at,
        payload={"nonce": p.nonce, "msg": _message(p), "lat": p.lat, "lng": p.lng, "acc": p.acc, "kid": p.kid,
                 "transport": item.envelope.transport},
    )




class IngestService:
    """Checks a batch of messages, stores the accepted ones in one transaction, reports each outcome.

    The caller owns the session and commits; nothing is acknowledged or broadcast before that.
    """

    def __init__(self, policy: IngestPolicy, counters: IngestCounters | None = None) -> None:
        self.policy = policy
        self.counters = counters or IngestCounters()
        self._secrets: dict[str, str] = {}

    async def process(
        self, session: AsyncSession, envelopes: Sequence[Envelope], now: datetime | None = None
    ) -> tuple[list[Outcome], Stored]:
        """Decide every message; returns outcomes in input order and the incidents to broadcast."""
        now = now or datetime.now(UTC)
        outcomes: list[Outcome | None] = [None] * len(envelopes)
        rejections: list[dict[str, Any]] = []

        def reject(index: int, exc: Rejected) -> None:
            env = envelopes[index]
            outcomes[index] = Outcome(Verdict.REJECTED, reason=exc.reason, detail=exc.detail)
            rejections.append(
                {
                    "received_at": env.received_at,
                    "transport": env.transport,
                    "topic": env.topic,
                    # Broken JSON names no pid: the topic still says which device sent it.
                    "pid": exc.pid or (env.topic.rsplit("/", 1)[-1][:64] if env.topic else None),
                    "reason": exc.reason.value,
                    "detail": exc.detail[:500],
                    "size": len(env.body),
                    "excerpt": _excerpt(env.body),
                }
            )

        parsed: list[tuple[int, SosPayload, dict[str, Any]]] = []
        for index, envelope in enumerate(envelopes):
            try:
                parsed.append((index, *_parse(envelope, self.policy.topic_prefix)))
            except Rejected as exc:
                reject(index, exc)

        # The raw connection for the bulk statements on PostgreSQL (None on SQLite), looked up once.
        pg = await asyncpg_connection(session) if parsed else None
        devices = await self._devices(session, pg, {p.pid for _, p, _ in parsed})
        checked: list[_Checked] = []
        for index, payload, raw in parsed:
            body = canonical_body(raw)
            try:
                device = _check_device(payload, body, devices.get(payload.pid), now)
                _check_time(payload, now, self.policy)
            except Rejected as exc:
                reject(index, exc)
                continue
            checked.append(
                _Checked(
                    index=index,
                    envelope=envelopes[index],
                    payload=payload,
                    device=device,
                    key=f"{payload.pid}:{payload.nonce}",
                    digest=hashlib.sha256(body).hexdigest(),
                )
            )

        attachable = await self._attachable(session, pg, checked, now)
        fresh = await self._claim(session, pg, checked, outcomes, reject, now, attachable)
        stored = await self._store(session, pg, fresh, attachable, now)
        for item in fresh:
            outcomes[item.index] = Outcome(
                Verdict.ACCEPTED, incident_id=item.incident_id, pid=item.payload.pid, nonce=item.payload.nonce
            )
        if rejections:
            await session.execute(insert(table_of(m.IngestRejection)), rejections)

        final = [o for o in outcomes if o is not None]
        assert len(final) == len(envelopes)
        for outcome in final:
            if outcome.verdict == Verdict.ACCEPTED:
                self.counters.accepted += 1
            elif outcome.verdict == Verdict.DUPLICATE:
                self.counters.duplicates += 1
            elif outcome.reason is not None:
                self.counters.rejected[outcome.reason.value] += 1
                log.info("sos rejected: %s (%s)", outcome.reason.value, outcome.detail)
        return final, stored

    async def _devices(self, session: AsyncSession, pg: Any | None, pids: set[str]) -> dict[str, _Device]:
        """The batch's devices with their keys, read in this transaction (a rotation counts at once)."""
        if not pids:
            return {}
        device, key = table_of(m.Device), table_of(m.DeviceKey)
        rows: Any
        if pg is not None:
            rows = await pg.fetch(_PG_DEVICES, list(pids))
        else:
            result = await session.execute(
                select(
                    device.c.id, device.c.pid, device.c.region, device.c.active,
                    # As stored: decrypted below, each ciphertext once.
                    key.c.kid, type_coerce(key.c.secret, String()).label("secret"), key.c.state, key.c.grace_until,
                )
                .select_from(device.outerjoin(key, key.c.device_id == device.c.id))
                .where(device.c.pid.in_(pids))
            )
            rows = result.mappings()
        devices: dict[str, _Device] = {}
        for row in rows:
            found = devices.get(row["pid"])
            if found is None:
                found = devices[row["pid"]] = _Device(_uuid(row["id"]), row["pid"], row["region"], row["active"])  # type: ignore[arg-type]
            if row["kid"] is not None:
                found.keys.append(_Key(row["kid"], self._secret(row["secret"]), row["state"], row["grace_until"]))
        return devices

    def _secret(self, stored: str) -> str:
        """A key's plain secret from its stored form, each ciphertext decrypted once."""
        plain = self._secrets.get(stored)
        if plain is None:
            if len(self._secrets) >= SECRET_CACHE_SIZE:
                self._secrets.clear()
            secret_type = cast("EncryptedString", table_of(m.DeviceKey).c.secret.type)
            plain = self._secrets[stored] = secret_type.process_result_value(stored, None) or ""  # type: ignore[arg-type]
        return plain

    async def _attachable(
        self, session: AsyncSession, pg: Any | None, checked: list[_Checked], now: datetime
    ) -> dict[uuid.UUID, IncidentOut]:
        """Per device, the incident its further SOS attach to: one query per batch, rows locked.

        The lock (``FOR UPDATE``, in id order like every other batch) keeps an operator from
        closing the incident between this read and the commit; a transition waits for us, or
        we wait for it and then no longer see a closed incident.
        """
        window = self.policy.sos_attach_window
        if not checked or window <= timedelta(0):
            return {}
        device_ids = list({c.device.id for c in checked})
        rows: Any
        if pg is not None:
            rows = await pg.fetch(_PG_ATTACHABLE, device_ids, _ACTIVE, now - window)
        else:
            table = table_of(m.Incident)
            result = await session.execute(
                select(*(table.c[name] for name in _ATTACH_COLUMNS))
                .where(
                    table.c.device_id.in_(device_ids),
                    table.c.status.in_(_ACTIVE),
                    func.coalesce(table.c.last_sos_at, table.c.received_at) >= now - window,
                )
                .order_by(table.c.id)
                .with_for_update()
            )
            rows = result.mappings()
        newest: dict[uuid.UUID, IncidentOut] = {}
        for row in rows:
            device_id, incident = _attachable_incident(row)
            best = newest.get(device_id)
            if best is None or (incident.last_sos_at or incident.created_at) > (best.last_sos_at or best.created_at):
                newest[device_id] = incident
        return newest

    def _plan(self, items: Sequence[_Checked], attachable: dict[uuid.UUID, IncidentOut]) -> None:
        """Set each item's incident: the device's attachable one, else the first item of the device opens one."""
        if self.policy.sos_attach_window <= timedelta(0):
            for item in items:
                item.incident_id = item.new_id
            return
        target: dict[uuid.UUID, uuid.UUID] = {}
        for item in items:
            device_id = item.device.id
            if device_id not in target:
                existing = attachable.get(device_id)
                # A device moved to another region starts afresh there.
                use = existing is not None and existing.region == item.device.region
                target[device_id] = existing.id if use and existing is not None else item.new_id
            item.incident_id = target[device_id]

    async def _claim(
        self,
        session: AsyncSession,
        pg: Any | None,
        checked: list[_Checked],
        outcomes: list[Outcome | None],
        reject: Callable[[int, Rejected], None],
        now: datetime,
        attachable: dict[uuid.UUID, IncidentOut],
    ) -> list[_Checked]:
        """Insert receipts; the primary key on ``{pid}:{nonce}`` decides who is first.

        Each receipt names the incident its message opened or attached to, so a duplicate
        answers with that id.
        """
        if not checked:
            return []
        first: dict[str, _Checked] = {}
        repeats: list[_Checked] = []
        for item in checked:
            if item.key in first:
                repeats.append(item)
            else:
                first[item.key] = item
        # Planned as if every message were new (the usual case) ...
        self._plan(list(first.values()), attachable)
        planned = {key: c.incident_id for key, c in first.items()}
        rows = [
            {"key": key, "digest": c.digest, "incident_id": c.incident_id, "received_at": now} for key, c in first.items()
        ]
        if pg is not None:
            found = await pg.fetch(
                _PG_RECEIPTS, [r["key"] for r in rows], [r["digest"] for r in rows], [r["incident_id"] for r in rows], now
            )
            inserted = {record[0] for record in found}
        else:
            # executemany keeps one cached statement whatever the batch size
            inserted = set(
                await session.scalars(insert_ignore(session, table_of(m.SosReceipt)).returning(m.SosReceipt.key), rows)
            )
        fresh = [first[key] for key in first if key in inserted]
        missing = [key for key in first if key not in inserted]
        stored: dict[str, tuple[str, uuid.UUID]] = {}
        if missing:
            # ... and planned again when some were not: a message meant to open an incident may be a duplicate.
            self._plan(fresh, attachable)
            moved = [{"b_key": c.key, "b_incident": c.incident_id} for c in fresh if c.incident_id != planned[c.key]]
            if moved:
                receipt = table_of(m.SosReceipt)
                await session.execute(
                    update(receipt).where(receipt.c.key == bindparam("b_key")).values(incident_id=bindparam("b_incident")),
                    moved,
                )
            receipts = await session.scalars(select(m.SosReceipt).where(m.SosReceipt.key.in_(missing)))
            stored.update({r.key: (r.digest, r.incident_id) for r in receipts})
        for item in fresh:
            assert item.incident_id is not None
            stored[item.key] = (item.digest, item.incident_id)

        for item in [first[key] for key in missing] + repeats:
            digest, incident_id = stored[item.key]
            self._settle_repeat(item, digest, incident_id, outcomes, reject)
        return fresh

    @staticmethod
    def _settle_repeat(
        item: _Checked,
        digest: str,
        incident_id: uuid.UUID,
        outcomes: list[Outcome | None],
        reject: Callable[[int, Rejected], None],
    ) -> None:
        if item.digest == digest:
            outcomes[item.index] = Outcome(
                Verdict.DUPLICATE, incident_id=incident_id, pid=item.payload.pid, nonce=item.payload.nonce
            )
        else:
            reject(
                item.index,
                Rejected(Reason.REPLAYED_NONCE, f"nonce {item.payload.nonce!r} was already used", item.payload.pid),
            )

    @staticmethod
    async def _store(
        session: AsyncSession,
        pg: Any | None,
        fresh: list[_Checked],
        attachable: dict[uuid.UUID, IncidentOut],
        now: datetime,
    ) -> Stored:
        """New incidents, attachments and every timeline event as a few multi-row statements (no ORM flush)."""
        stored = Stored()
        if not fresh:
            return stored
        groups: dict[uuid.UUID, list[_Checked]] = {}
        for item in fresh:
            assert item.incident_id is not None
            groups.setdefault(item.incident_id, []).append(item)
        existing = {i.id: i for i in attachable.values()}

        new_rows: list[dict[str, Any]] = []
        attach_rows: list[dict[str, Any]] = []
        for incident_id, items in groups.items():
            last = items[-1]
            located = [c.payload for c in items if c.payload.lat is not None]
            if incident_id in existing:
                before = existing[incident_id]
                # An SOS without a location keeps the last known one.
                lat, lng, acc = before.lat, before.lng, before.acc
                if located:
                    lat, lng, acc = located[-1].lat, located[-1].lng, located[-1].acc
                incident = msgspec.structs.replace(
                    before, lat=lat, lng=lng, acc=acc, sos_count=before.sos_count + len(items),
                    last_sos_at=last.envelope.received_at,
                )
                attach_rows.append(
                    {"b_id": incident_id, "b_lat": lat, "b_lng": lng, "b_acc": acc, "b_count": incident.sos_count,
                     "b_last": incident.last_sos_at, "b_now": now}
                )
                stored.updated.append((incident, _change(last)))
                continue
            opener = items[0]
            p = opener.payload
            where = located[-1] if located else p
            incident = IncidentOut(
                id=incident_id,
                region=opener.device.region,
                status=m.IncidentStatus.OPEN,
                source=opener.envelope.transport,
                device=p.pid,
                msg=_message(p),
                lat=where.lat,
                lng=where.lng,
                acc=where.acc,
                ts=datetime.fromtimestamp(p.ts, UTC),
                created_at=opener.envelope.received_at,
                sos_count=len(items),
                last_sos_at=last.envelope.received_at,
            )
            stored.created.append(incident)
            new_rows.append(
                {
                    "id": incident.id,
                    "region": incident.region,
                    "source": incident.source,
                    "device_id": opener.device.id,
                    "device_pid": incident.device,
                    "message": incident.msg,
                    "lat": incident.lat,
                    "lng": incident.lng,
                    "accuracy": incident.acc,
                    "device_ts": incident.ts,
                    "received_at": incident.created_at,
                    "status": incident.status,
                    "sos_count": incident.sos_count,
                    "last_sos_at": incident.last_sos_at,
                }
            )

        if new_rows and pg is not None:
            await pg.execute(_PG_INCIDENTS, *([row[c] for row in new_rows] for c in _INCIDENT_COLUMNS))
        elif new_rows:
            await session.execute(insert(table_of(m.Incident)), new_rows)
        if attach_rows and pg is not None:
            await pg.executemany(_PG_ATTACH, [tuple(row[c] for c in _ATTACH_PARAMS) for row in attach_rows])
        elif attach_rows:
            table = table_of(m.Incident)
            await session.execute(
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values(
                    lat=bindparam("b_lat"), lng=bindparam("b_lng"), accuracy=bindparam("b_acc"),
                    sos_count=bindparam("b_count"), last_sos_at=bindparam("b_last"), updated_at=bindparam("b_now"),
                ),
                attach_rows,
            )
        events = []
        for item in fresh:
            change = _change(item)
            events.append(
                {"incident_id": item.incident_id, "type": change.type, "actor": change.actor,
                 "created_at": change.at, "payload": change.payload}
            )
        if pg is not None:
            await pg.execute(
                _PG_EVENTS,
                [e["incident_id"] for e in events],
                [e["type"] for e in events],
                [msgspec.json.encode(e["payload"]).decode() for e in events],
                [e["actor"] for e in events],
                [e["created_at"] for e in events],
            )
        else:
            await session.execute(insert(table_of(m.IncidentEvent)), events)
        # Each device's newest message and when it was heard; rows in id order, as other batches lock them.
        latest = {c.device.id: c for c in fresh}
        if pg is not None:
            await pg.executemany(
                _PG_DEVICE_HEARD, [(now, _message(latest[device_id].payload), device_id) for device_id in sorted(latest)]
            )
        else:
            device = table_of(m.Device)
            await session.execute(
                update(device)
                .where(device.c.id == bindparam("b_id"))
                .values(last_seen_at=now, last_message=bindparam("b_msg")),
                [{"b_id": device_id, "b_msg": _message(latest[device_id].payload)} for device_id in sorted(latest)],
            )
        return stored

    @staticmethod
    async def incidents(session: AsyncSession, ids: Sequence[uuid.UUID]) -> list[IncidentOut]:
        """The incidents ``ids`` as they are now, in the form the live feed broadcasts."""
        if not ids:
            return []
        table = table_of(m.Incident)
        result = await session.execute(
            select(*(table.c[name] for name in _ATTACH_COLUMNS)).where(table.c.id.in_(ids)).order_by(table.c.received_at)
        )
        return [_attachable_incident(row)[1] for row in result.mappings()]

    async def stats(self, session: AsyncSession) -> IngestStats:
        """Counters of this process and what the rejection log holds by reason."""
        rows = await session.execute(
            select(m.IngestRejection.reason, func.count()).group_by(m.IngestRejection.reason).order_by(m.IngestRejection.reason)
        )
        return IngestStats(
            accepted=self.counters.accepted,
            duplicates=self.counters.duplicates,
            rejected=dict(self.counters.rejected),
            logged_rejections=[RejectionCount(reason=r, count=c) for r, c in rows],
        )

    @staticmethod
    async def rejections(
        session: AsyncSession, *, reason: str | None, pid: str | None, limit: int, offset: int
    ) -> Page[Rejection]:
        """The rejection log, newest first."""
        query = select(m.IngestRejection)
        if reason:
            query = query.where(m.IngestRejection.reason == reason)
        if pid:
            query = query.where(m.IngestRejection.pid == pid)
        total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = await session.scalars(query.order_by(m.IngestRejection.id.desc()).limit(limit).offset(offset))
        items = [
            Rejection(
                id=r.id, received_at=r.received_at, transport=r.transport, topic=r.topic, pid=r.pid,
                reason=r.reason, detail=r.detail, size=r.size, excerpt=r.excerpt,
            )
            for r in rows
        ]
        return Page(items=items, total=total, limit=limit, offset=offset)

    async def trim_rejection_log(self, session: AsyncSession) -> None:
        """Keep only the newest rows of the rejection log."""
        cutoff = await session.scalar(
            select(m.IngestRejection.id).order_by(m.IngestRejection.id.desc()).offset(self.policy.rejection_log_max_rows).limit(1)
        )
        if cutoff is not None:
            await session.execute(delete(m.IngestRejection).where(m.IngestRejection.id <= cutoff))
