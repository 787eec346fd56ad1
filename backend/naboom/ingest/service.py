"""Verification and storage of SOS messages: one code path for MQTT and HTTP."""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgspec
from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.db import models as m
from naboom.incidents.schemas import IncidentOut
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
from naboom.ingest.signing import canonical_body, signature_matches
from naboom.schemas import Page

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096
MAX_MESSAGE_CHARS = 280
_decoder = msgspec.json.Decoder()

Broadcast = Callable[[list[dict[str, Any]]], Awaitable[None]]


class Rejected(Exception):
    """A message failed one check of CONTRACT §1."""

    def __init__(self, reason: Reason, detail: str, pid: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.pid = pid


@dataclass(slots=True)
class _Checked:
    """A message that passed every check but de-duplication."""

    index: int
    envelope: Envelope
    payload: SosPayload
    device: m.Device
    key: str
    digest: str
    incident_id: uuid.UUID | None = None


@dataclass(slots=True)
class IngestCounters:
    """What this process has decided since it started."""

    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class IngestPolicy:
    """The time rules of acceptance."""

    dedup_window: timedelta
    future_skew: timedelta
    rejection_log_max_rows: int


def _parse(envelope: Envelope) -> tuple[SosPayload, dict[str, Any]]:
    """Well-formed JSON and schema, then the topic's pid."""
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


def _check_device(payload: SosPayload, raw: dict[str, Any], device: m.Device | None, now: datetime) -> m.Device:
    """Device known and active, key usable, signature right."""
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
    if not signature_matches(raw, key.secret, payload.sig):
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


def _table(model: type[Any]) -> Table:
    """A model's table, for Core inserts that skip the ORM's per-row bookkeeping."""
    return cast(Table, model.__table__)


def _insert_ignore(session: AsyncSession, table: Table) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING`` in the session's dialect."""
    dialect = session.get_bind().dialect.name
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    return stmt.on_conflict_do_nothing()


class IngestService:
    """Checks a batch of messages, stores the accepted ones in one transaction, reports each outcome.

    The caller owns the session and commits; nothing is acknowledged or broadcast before that.
    """

    def __init__(self, policy: IngestPolicy, counters: IngestCounters | None = None) -> None:
        self.policy = policy
        self.counters = counters or IngestCounters()

    async def process(
        self, session: AsyncSession, envelopes: Sequence[Envelope], now: datetime | None = None
    ) -> tuple[list[Outcome], list[IncidentOut]]:
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
                parsed.append((index, *_parse(envelope)))
            except Rejected as exc:
                reject(index, exc)

        devices = await self._devices(session, {p.pid for _, p, _ in parsed})
        checked: list[_Checked] = []
        for index, payload, raw in parsed:
            try:
                device = _check_device(payload, raw, devices.get(payload.pid), now)
                _check_time(payload, now, self.policy)
            except Rejected as exc:
                reject(index, exc)
                continue
            body = canonical_body(raw)
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

        fresh = await self._claim(session, checked, outcomes, reject, now)
        incidents = await self._insert_incidents(session, fresh)
        for item, incident in zip(fresh, incidents, strict=True):
            outcomes[item.index] = Outcome(Verdict.ACCEPTED, incident_id=incident.id)
        if fresh:
            await session.execute(
                update(m.Device).where(m.Device.id.in_({c.device.id for c in fresh})).values(last_seen_at=now)
            )
        if rejections:
            await session.execute(insert(_table(m.IngestRejection)), rejections)

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
        return final, incidents

    async def _devices(self, session: AsyncSession, pids: set[str]) -> dict[str, m.Device]:
        if not pids:
            return {}
        rows = await session.scalars(select(m.Device).where(m.Device.pid.in_(pids)))
        return {d.pid: d for d in rows}

    async def _claim(
        self,
        session: AsyncSession,
        checked: list[_Checked],
        outcomes: list[Outcome | None],
        reject: Callable[[int, Rejected], None],
        now: datetime,
    ) -> list[_Checked]:
        """Insert receipts; the primary key on ``{pid}:{nonce}`` decides who is first."""
        if not checked:
            return []
        first: dict[str, _Checked] = {}
        repeats: list[_Checked] = []
        for item in checked:
            if item.key in first:
                repeats.append(item)
            else:
                first[item.key] = item
        ids = {key: uuid.uuid4() for key in first}
        rows = [
            {"key": key, "digest": c.digest, "incident_id": ids[key], "received_at": now} for key, c in first.items()
        ]
        # executemany keeps one cached statement whatever the batch size
        inserted = set(await session.scalars(_insert_ignore(session, _table(m.SosReceipt)).returning(m.SosReceipt.key), rows))
        # What each key stands for now: ours if we inserted it, else the receipt already stored.
        stored = {key: (first[key].digest, ids[key]) for key in inserted}
        missing = [key for key in first if key not in inserted]
        if missing:
            receipts = await session.scalars(select(m.SosReceipt).where(m.SosReceipt.key.in_(missing)))
            stored.update({r.key: (r.digest, r.incident_id) for r in receipts})

        fresh = [first[key] for key in first if key in inserted]
        for item in fresh:
            item.incident_id = ids[item.key]
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
            outcomes[item.index] = Outcome(Verdict.DUPLICATE, incident_id=incident_id)
        else:
            reject(
                item.index,
                Rejected(Reason.REPLAYED_NONCE, f"nonce {item.payload.nonce!r} was already used", item.payload.pid),
            )

    @staticmethod
    async def _insert_incidents(session: AsyncSession, fresh: list[_Checked]) -> list[IncidentOut]:
        """Each new incident and its first timeline event, as two multi-row inserts (no ORM flush)."""
        if not fresh:
            return []
        incidents: list[IncidentOut] = []
        events: list[dict[str, Any]] = []
        for item in fresh:
            p = item.payload
            assert item.incident_id is not None
            incidents.append(
                IncidentOut(
                    id=item.incident_id,
                    region=item.device.region,
                    status=m.IncidentStatus.OPEN,
                    source=item.envelope.transport,
                    device=p.pid,
                    msg=(p.msg or "SOS")[:MAX_MESSAGE_CHARS],
                    lat=p.lat,
                    lng=p.lng,
                    acc=p.acc,
                    ts=datetime.fromtimestamp(p.ts, UTC),
                    created_at=item.envelope.received_at,
                    sos_count=1,
                )
            )
            events.append(
                {
                    "incident_id": item.incident_id,
                    "type": "sos",
                    "actor": f"device:{p.pid}",
                    "created_at": item.envelope.received_at,
                    "payload": {"nonce": p.nonce, "lat": p.lat, "lng": p.lng, "acc": p.acc, "kid": p.kid,
                                "transport": item.envelope.transport},
                }
            )
        rows = [
            {
                "id": i.id,
                "region": i.region,
                "source": i.source,
                "device_id": item.device.id,
                "device_pid": i.device,
                "message": i.msg,
                "lat": i.lat,
                "lng": i.lng,
                "accuracy": i.acc,
                "device_ts": i.ts,
                "received_at": i.created_at,
                "status": i.status,
                "sos_count": 1,
            }
            for i, item in zip(incidents, fresh, strict=True)
        ]
        await session.execute(insert(_table(m.Incident)), rows)
        await session.execute(insert(_table(m.IncidentEvent)), events)
        return incidents

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
