"""Incidents: queries and the lifecycle, always inside the caller's regions.

The lifecycle::

    open ──► acknowledged ──► dispatched ──► resolved
      │            │               │
      └────────────┴───────────────┴───────► cancelled   (false alarm)

* ``acknowledge`` takes an open incident and records who took it and how long that took.
* ``dispatch`` sends a patrol vehicle. From ``open`` it acknowledges implicitly (an operator who
  sends a car has obviously seen the alarm; both events go on the timeline and the
  acknowledgement time is recorded). On a dispatched incident it re-assigns to another vehicle
  and releases the previous one.
* ``resolve`` closes an acknowledged or dispatched incident (one handled by phone needs no
  vehicle); an open one must be acknowledged first, so every resolved incident has an
  acknowledgement time.
* ``cancel`` closes any incident that is not closed yet. Resolving or cancelling releases the
  assigned vehicle.
* Notes may be added in any status, closed ones included (reports are written afterwards).

Every action locks the incident row (``SELECT … FOR UPDATE``): of two operators acting at once,
the second sees the first one's result and gets a 409 naming the current status. Viewers get
403; an incident outside the caller's regions does not exist for them (404).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.audit.service import record
from naboom.db import models as m
from naboom.errors import ConflictError, NaboomError, NotFoundError
from naboom.incidents.schemas import IncidentDetail, IncidentOut, IncidentSort, TimelineEntry
from naboom.outbox.messages import incident_moved
from naboom.schemas import Page
from naboom.users.auth import Principal
from naboom.vehicles.service import nearest_available

S = m.IncidentStatus
# Not closed yet: transitions (and repeated SOS) still apply.
ACTIVE_STATUSES = (S.OPEN, S.ACKNOWLEDGED, S.DISPATCHED)
_STATUS_RANK = {s.value: rank for rank, s in enumerate((S.OPEN, S.ACKNOWLEDGED, S.DISPATCHED, S.RESOLVED, S.CANCELLED))}
MAX_EXPORT_RANGE = timedelta(days=366)
NEAREST_VEHICLES = 5
_EXPORT_CHUNK_ROWS = 500

SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]


def as_utc(value: datetime | None) -> datetime | None:
    """A query time in UTC; one without an offset is read as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise NaboomError(f"{value.isoformat()} is outside the years a database can store") from None


def _no_nul(name: str, value: str | None) -> str | None:
    """Text filters go to the database, which cannot hold a NUL character."""
    if value is not None and "\x00" in value:
        raise NaboomError(f"{name} must not contain a NUL character")
    return value


class BoundingBox:
    """``min_lat, min_lng, max_lat, max_lng``; ``min_lng > max_lng`` crosses the antimeridian."""

    def __init__(self, min_lat: float, min_lng: float, max_lat: float, max_lng: float) -> None:
        if min_lat > max_lat:
            raise NaboomError(f"bounding box: min_lat {min_lat} is north of max_lat {max_lat}")
        self.min_lat, self.min_lng, self.max_lat, self.max_lng = min_lat, min_lng, max_lat, max_lng

    @classmethod
    def parse(cls, *corners: float | None) -> BoundingBox | None:
        """All four corners or none."""
        given = [c for c in corners if c is not None]
        if not given:
            return None
        if len(given) != 4:
            raise NaboomError("bounding box needs all of min_lat, min_lng, max_lat and max_lng")
        return cls(*given)

    def condition(self) -> ColumnElement[bool]:
        """Incidents located inside the box (unlocated ones never are)."""
        lat = m.Incident.lat.between(self.min_lat, self.max_lat)
        if self.min_lng <= self.max_lng:
            return and_(lat, m.Incident.lng.between(self.min_lng, self.max_lng))
        return and_(lat, or_(m.Incident.lng >= self.min_lng, m.Incident.lng <= self.max_lng))


class IncidentService(SQLAlchemyAsyncRepositoryService[m.Incident]):
    """Reads and changes incidents; every method takes the caller and stays inside their regions.

    Changes are flushed with the session, never committed: the caller commits, then broadcasts
    the returned ``(incident, change)`` as ``incident.updated``.
    """

    class Repo(SQLAlchemyAsyncRepository[m.Incident]):
        model_type = m.Incident

    repository_type = Repo

    @property
    def session(self) -> AsyncSession:
        """The session this service works in."""
        return self.repository.session

    # Queries ---------------------------------------------------------------------------------

    async def page(
        self,
        principal: Principal,
        *,
        status: Sequence[str] = (),
        region: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        device: str | None = None,
        bbox: BoundingBox | None = None,
        sort: IncidentSort = IncidentSort.NEWEST,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[IncidentOut]:
        """Filtered, scoped, sorted; ties broken by id so that pages neither overlap nor skip."""
        since, until = as_utc(since), as_utc(until)
        region, device = _no_nul("region", region), _no_nul("device", device)
        if since is not None and until is not None and since >= until:
            raise NaboomError(f"since ({since.isoformat()}) must be before until ({until.isoformat()})")
        where: list[ColumnElement[bool]] = []
        if not principal.is_admin:
            where.append(m.Incident.region.in_(principal.regions))
        if region is not None:
            where.append(m.Incident.region == region)
        if status:
            where.append(m.Incident.status.in_(status))
        if since is not None:
            where.append(m.Incident.received_at >= since)
        if until is not None:
            where.append(m.Incident.received_at < until)
        if device is not None:
            where.append(m.Incident.device_pid == device)
        if bbox is not None:
            where.append(bbox.condition())
        # Plain rows straight into the answer's structs: no ORM objects to build and track for
        # a page that is only read (the columns are in IncidentOut's field order).
        total = await self.session.scalar(select(func.count()).select_from(m.Incident).where(*where)) or 0
        rows = await self.session.execute(
            select(*_EXPORT_SELECT).where(*where).order_by(*_order(sort)).limit(limit).offset(offset)
        )
        return Page(items=[IncidentOut(*row) for row in rows], total=total, limit=limit, offset=offset)

    async def detail(self, principal: Principal, incident_id: uuid.UUID) -> IncidentDetail:
        """One incident with its timeline and nearest available vehicles; 404 outside the caller's regions."""
        incident = await self.repository.get_one_or_none(id=incident_id)
        if incident is None or not principal.can_see(incident.region):
            raise _not_found(incident_id)
        events = await self.session.scalars(
            select(m.IncidentEvent).where(m.IncidentEvent.incident_id == incident_id).order_by(m.IncidentEvent.id)
        )
        timeline = [_entry(e) for e in events]
        callsign = None
        if incident.vehicle_id is not None:
            callsign = await self.session.scalar(select(m.Vehicle.callsign).where(m.Vehicle.id == incident.vehicle_id))
        nearest = []
        if incident.lat is not None and incident.lng is not None and incident.status in ACTIVE_STATUSES:
            nearest = await nearest_available(self.session, incident.region, incident.lat, incident.lng, NEAREST_VEHICLES)
        base = IncidentOut.from_model(incident)
        return IncidentDetail(
            **{f: getattr(base, f) for f in base.__struct_fields__},
            timeline=timeline,
            vehicle_callsign=callsign,
            nearest_vehicles=nearest,
        )

    # The lifecycle ---------------------------------------------------------------------------

    async def acknowledge(
        self, principal: Principal, incident_id: uuid.UUID, note: str | None = None
    ) -> tuple[IncidentOut, TimelineEntry]:
        """``open → acknowledged``: records who and how many seconds after the alarm arrived."""
        incident = await self._lock(principal, incident_id)
        _require(incident, "acknowledge", (S.OPEN,))
        now = datetime.now(UTC)
        self._acknowledge(incident, principal, now)
        change = self._event(incident, principal, "acknowledged", now, note, ack_seconds=incident.ack_seconds)
        record(self.session, principal, "incident.acknowledge", "incident", incident.id,
               {"ack_seconds": incident.ack_seconds, "note": note})
        return await self._changed(incident, change, moved=True)

    async def dispatch(
        self, principal: Principal, incident_id: uuid.UUID, vehicle_id: uuid.UUID, note: str | None = None
    ) -> tuple[IncidentOut, TimelineEntry]:
        """Send an active, available vehicle of the incident's region; it becomes unavailable.

        From ``open`` this acknowledges first; on a dispatched incident it re-assigns and
        releases the previous vehicle.
        """
        incident = await self._lock(principal, incident_id)
        _require(incident, "dispatch", ACTIVE_STATUSES)
        if incident.vehicle_id == vehicle_id:
            raise ConflictError(
                f"incident {incident.id} is already dispatched with vehicle {vehicle_id}",
                current_status=incident.status,
            )
        # Row locks in one order everywhere: the incident, then vehicles.
        vehicle = await self.session.scalar(
            select(m.Vehicle).where(m.Vehicle.id == vehicle_id).with_for_update().execution_options(populate_existing=True)
        )
        if vehicle is None or vehicle.region != incident.region:
            raise NaboomError(f"no vehicle {vehicle_id} in region {incident.region}")
        if not vehicle.active:
            raise ConflictError(f"vehicle {vehicle.callsign} is deactivated")
        if not vehicle.available:
            raise ConflictError(f"vehicle {vehicle.callsign} is not available (assigned elsewhere or off duty)")
        now = datetime.now(UTC)
        if incident.status == S.OPEN:
            self._acknowledge(incident, principal, now)
            self._event(incident, principal, "acknowledged", now, None, ack_seconds=incident.ack_seconds, implicit=True)
        previous = await self._release(incident)
        vehicle.available = False
        incident.vehicle_id = vehicle.id
        incident.status = S.DISPATCHED
        incident.dispatched_at = now
        details: dict[str, Any] = {"vehicle_id": str(vehicle.id), "callsign": vehicle.callsign}
        if previous is not None:
            details["previous_vehicle_id"] = str(previous.id)
            details["previous_callsign"] = previous.callsign
        change = self._event(incident, principal, "dispatched", now, note, **details)
        record(self.session, principal, "incident.dispatch", "incident", incident.id, {**details, "note": note})
        return await self._changed(incident, change, moved=True)

    async def resolve(
        self, principal: Principal, incident_id: uuid.UUID, note: str | None = None
    ) -> tuple[IncidentOut, TimelineEntry]:
        """``acknowledged|dispatched → resolved``; the vehicle becomes available again."""
        incident = await self._lock(principal, incident_id)
        _require(incident, "resolve", (S.ACKNOWLEDGED, S.DISPATCHED),
                 hint="acknowledge it first, or cancel a false alarm" if incident.status == S.OPEN else None)
        return await self._close(incident, principal, S.RESOLVED, "resolve", note)

    async def cancel(
        self, principal: Principal, incident_id: uuid.UUID, note: str | None = None
    ) -> tuple[IncidentOut, TimelineEntry]:
        """Any status not closed yet ``→ cancelled`` (a false alarm); the vehicle becomes available again."""
        incident = await self._lock(principal, incident_id)
        _require(incident, "cancel", ACTIVE_STATUSES)
        return await self._close(incident, principal, S.CANCELLED, "cancel", note)

    async def add_note(self, principal: Principal, incident_id: uuid.UUID, text: str) -> tuple[IncidentOut, TimelineEntry]:
        """A free-text note on the timeline, in any status."""
        text = text.strip()
        if not text:
            raise NaboomError("a note needs some text")
        incident = await self._lock(principal, incident_id)
        change = self._event(incident, principal, "note", datetime.now(UTC), None, text=text)
        record(self.session, principal, "incident.note", "incident", incident.id, {"text": text})
        return await self._changed(incident, change)

    async def _lock(self, principal: Principal, incident_id: uuid.UUID) -> m.Incident:
        principal.require_act()
        incident = await self.session.scalar(
            select(m.Incident)
            .where(m.Incident.id == incident_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if incident is None or not principal.can_see(incident.region):
            raise _not_found(incident_id)
        return incident

    @staticmethod
    def _acknowledge(incident: m.Incident, principal: Principal, now: datetime) -> None:
        incident.status = S.ACKNOWLEDGED
        incident.acknowledged_at = now
        incident.acknowledged_by = principal.username
        incident.ack_seconds = round(max(0.0, (now - incident.received_at).total_seconds()), 3)

    async def _close(
        self, incident: m.Incident, principal: Principal, status: m.IncidentStatus, action: str, note: str | None
    ) -> tuple[IncidentOut, TimelineEntry]:
        now = datetime.now(UTC)
        released = await self._release(incident)
        incident.status = status
        incident.closed_at = now
        incident.closed_by = principal.username
        details = {"vehicle_id": str(released.id), "callsign": released.callsign} if released else {}
        change = self._event(incident, principal, status.value, now, note, **details)
        record(self.session, principal, f"incident.{action}", "incident", incident.id, {**details, "note": note})
        return await self._changed(incident, change, moved=True)

    async def _release(self, incident: m.Incident) -> m.Vehicle | None:
        """Make the incident's vehicle available again; returns it."""
        if incident.vehicle_id is None:
            return None
        vehicle = await self.session.scalar(
            select(m.Vehicle)
            .where(m.Vehicle.id == incident.vehicle_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if vehicle is not None:
            vehicle.available = True
        return vehicle

    def _event(
        self, incident: m.Incident, principal: Principal, type_: str, at: datetime, note: str | None, **payload: Any
    ) -> m.IncidentEvent:
        if note:
            payload["note"] = note
        event = m.IncidentEvent(incident_id=incident.id, type=type_, actor=principal.username, payload=payload, created_at=at)
        self.session.add(event)
        return event

    async def _changed(
        self, incident: m.Incident, event: m.IncidentEvent, *, moved: bool = False
    ) -> tuple[IncidentOut, TimelineEntry]:
        await self.session.flush()
        out = IncidentOut.from_model(incident)
        if moved:
            # The device and the region's displays hear of a new status in this same transaction.
            await incident_moved(self.session, [out])
        return out, _entry(event)


# Export ------------------------------------------------------------------------------------

EXPORT_COLUMNS = (
    "id", "region", "status", "source", "device", "msg", "lat", "lng", "acc", "ts", "received_at", "sos_count",
    "last_sos_at", "acknowledged_at", "acknowledged_by", "ack_seconds", "dispatched_at", "vehicle_id", "closed_at",
    "closed_by",
)
# In IncidentOut's field order: the list builds its items from these rows positionally.
_EXPORT_SELECT = (
    m.Incident.id, m.Incident.region, m.Incident.status, m.Incident.source, m.Incident.device_pid, m.Incident.message,
    m.Incident.lat, m.Incident.lng, m.Incident.accuracy, m.Incident.device_ts, m.Incident.received_at,
    m.Incident.sos_count, m.Incident.last_sos_at, m.Incident.acknowledged_at, m.Incident.acknowledged_by,
    m.Incident.ack_seconds, m.Incident.dispatched_at, m.Incident.vehicle_id, m.Incident.closed_at,
    m.Incident.closed_by,
)
# Spreadsheets run cells that start like a formula; device messages and names are not trusted.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def export_range(
    principal: Principal, since: str | None, until: str | None, region: str | None = None
) -> tuple[datetime, datetime]:
    """The checked ``[since, until)`` of a CSV export: admins only, both ends, at most 366 days.

    Everything is checked here, before the first byte of the answer is sent.
    """
    principal.require_admin()
    _no_nul("region", region)
    if since is None or until is None:
        raise NaboomError("an export needs both since and until (ISO 8601 dates or date-times)")
    start, end = _instant("since", since), _instant("until", until)
    if start >= end:
        raise NaboomError(f"since ({start.isoformat()}) must be before until ({end.isoformat()})")
    if end - start > MAX_EXPORT_RANGE:
        raise NaboomError(f"an export covers at most {MAX_EXPORT_RANGE.days} days; ask for several ranges")
    return start, end


async def export_csv(
    sessions: SessionFactory, since: datetime, until: datetime, region: str | None = None
) -> AsyncIterator[bytes]:
    """Incidents received in ``[since, until)`` as CSV with a header row, oldest first, streamed in chunks.

    It opens its own session: the rows are read while the response is being sent.
    """
    query = select(*_EXPORT_SELECT).where(m.Incident.received_at >= since, m.Incident.received_at < until)
    if region is not None:
        query = query.where(m.Incident.region == region)
    query = query.order_by(m.Incident.received_at, m.Incident.id).execution_options(yield_per=_EXPORT_CHUNK_ROWS)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    yield buffer.getvalue().encode()
    async with sessions() as session:
        result = await session.stream(query)
        async for rows in result.partitions():
            buffer.seek(0)
            buffer.truncate()
            writer.writerows([_csv_cell(value) for value in row] for row in rows)
            yield buffer.getvalue().encode()


def _instant(name: str, value: str) -> datetime:
    """An ISO 8601 date (midnight) or date-time; UTC without an offset."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise NaboomError(f"{name}: {value[:40]!r} is not an ISO 8601 date or date-time") from None
    instant = as_utc(parsed)
    assert instant is not None
    return instant


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _order(sort: IncidentSort) -> tuple[Any, ...]:
    if sort == IncidentSort.OLDEST:
        return m.Incident.received_at.asc(), m.Incident.id.asc()
    newest = (m.Incident.received_at.desc(), m.Incident.id.desc())
    if sort == IncidentSort.STATUS:
        return (case(_STATUS_RANK, value=m.Incident.status, else_=len(_STATUS_RANK)), *newest)
    return newest


def _require(
    incident: m.Incident, action: str, allowed: Sequence[m.IncidentStatus], hint: str | None = None
) -> None:
    """409 unless the incident is in one of the ``allowed`` statuses."""
    if incident.status in allowed:
        return
    detail = (
        f"cannot {action} incident {incident.id}: it is {incident.status}; "
        f"only {' or '.join(allowed)} incidents can be {_PAST[action]}"
    )
    raise ConflictError(f"{detail} ({hint})" if hint else detail, current_status=incident.status)


_PAST = {"acknowledge": "acknowledged", "dispatch": "dispatched", "resolve": "resolved", "cancel": "cancelled"}


def _entry(event: m.IncidentEvent) -> TimelineEntry:
    return TimelineEntry(id=event.id, type=event.type, actor=event.actor, at=event.created_at, payload=event.payload)


def _not_found(incident_id: uuid.UUID) -> NotFoundError:
    return NotFoundError(f"no incident {incident_id}")
