"""Outbound SMS: queueing messages idempotently, responder contacts, the outbound log, failure alerts.

Sending lives in ``sender``, alerting new incidents in ``alerts``, delivery callbacks in ``callbacks``.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.audit.service import record
from naboom.db import models as m
from naboom.db.inserts import insert_ignore, table_of
from naboom.errors import ConflictError, NaboomError, NotFoundError
from naboom.notify.providers import mask_phone, without_phone
from naboom.notify.schemas import (
    AttemptOut,
    ContactCreate,
    ContactOut,
    ContactUpdate,
    MessageDetail,
    MessageOut,
)
from naboom.realtime.feed import LiveFeed
from naboom.regions.service import RegionService
from naboom.schemas import Page
from naboom.users.auth import Principal

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "system"


def message_key(incident_id: uuid.UUID | str, step: str, recipient: str) -> str:
    """The idempotency key of one send: incident, step and recipient."""
    return f"{incident_id}:{step}:{recipient}"


async def queue_messages(
    session: AsyncSession,
    *,
    incident_id: uuid.UUID,
    region: str,
    step: str,
    recipients: Iterable[str],
    body: str,
    now: datetime,
) -> list[uuid.UUID]:
    """Log one ``queued`` message per recipient; returns the ids of those not queued before.

    A second call for the same (incident, step, recipient) adds nothing, so whoever queues may
    retry freely. The caller commits, then kicks ``send_sms`` for each returned id.
    """
    rows = [
        {
            "id": uuid.uuid4(),
            "key": message_key(incident_id, step, recipient),
            "incident_id": incident_id,
            "region": region,
            "step": step,
            "recipient": recipient,
            "body": body,
            "status": m.MessageStatus.QUEUED,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for recipient in dict.fromkeys(recipients)
    ]
    if not rows:
        return []
    stmt = insert_ignore(session, table_of(m.OutboundMessage)).returning(table_of(m.OutboundMessage).c.id)
    return list(await session.scalars(stmt, rows))


# Responder contacts ------------------------------------------------------------------------

# E.164: "+", a country code that does not start with 0, 8 to 15 digits in all.
E164 = re.compile(r"\+[1-9][0-9]{7,14}")
# Separators people write numbers with; removed before the number is checked.
_PHONE_SEPARATORS = re.compile(r"[\s\-().]")


def normalize_phone(raw: str) -> str:
    """An E.164 number (``+`` and 8 to 15 digits) from what an admin typed, or a 400 saying what is wrong."""
    phone = _PHONE_SEPARATORS.sub("", raw)
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    if not E164.fullmatch(phone):
        raise NaboomError(
            f"phone {raw[:32]!r} is not an E.164 number: write '+', the country code and the number, "
            "8 to 15 digits in all (for example +27821234567)"
        )
    return phone


def _name(raw: str) -> str:
    name = " ".join(raw.split())
    if not name:
        raise NaboomError("a contact needs a name")
    return name


def contact_out(contact: m.ResponderContact) -> ContactOut:
    """A contact as admins see it."""
    return ContactOut(
        id=contact.id, region=contact.region, name=contact.name, phone=contact.phone, active=contact.active,
        created_at=contact.created_at, updated_at=contact.updated_at,
    )


class ContactService(SQLAlchemyAsyncRepositoryService[m.ResponderContact]):
    """Responder contacts of a region (admins only; every change is audited)."""

    class Repo(SQLAlchemyAsyncRepository[m.ResponderContact]):
        model_type = m.ResponderContact

    repository_type = Repo

    @property
    def session(self) -> AsyncSession:
        """The session this service works in."""
        return self.repository.session

    async def page(self, region: str, *, limit: int, offset: int) -> Page[ContactOut]:
        """The region's contacts by name."""
        await RegionService(session=self.session).get_region(region)
        query = select(m.ResponderContact).where(m.ResponderContact.region == region)
        total = await self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = await self.session.scalars(
            query.order_by(m.ResponderContact.name, m.ResponderContact.id).limit(limit).offset(offset)
        )
        return Page(items=[contact_out(c) for c in rows], total=total, limit=limit, offset=offset)

    async def create_contact(self, principal: Principal, region: str, data: ContactCreate) -> ContactOut:
        """A new contact; a phone number is listed once per region."""
        await RegionService(session=self.session).get_region(region)
        phone = normalize_phone(data.phone)
        await self._require_free(region, phone)
        contact = await self.repository.add(
            m.ResponderContact(region=region, name=_name(data.name), phone=phone, active=data.active)
        )
        record(self.session, principal, "contact.create", "responder_contact", contact.id,
               {"region": region, "name": contact.name, "phone": mask_phone(phone), "active": contact.active})
        return contact_out(contact)

    async def update_contact(
        self, principal: Principal, region: str, contact_id: uuid.UUID, data: ContactUpdate
    ) -> ContactOut:
        """Rename, renumber, (de)activate."""
        contact = await self._get(region, contact_id)
        changes: dict[str, Any] = {}
        if data.phone is not None:
            phone = normalize_phone(data.phone)
            if phone != contact.phone:
                await self._require_free(region, phone)
                contact.phone = phone
                changes["phone"] = mask_phone(phone)
        if data.name is not None:
            contact.name = _name(data.name)
            changes["name"] = contact.name
        if data.active is not None:
            contact.active = data.active
            changes["active"] = data.active
        await self.session.flush()
        record(self.session, principal, "contact.update", "responder_contact", contact.id, {"region": region, **changes})
        return contact_out(contact)

    async def delete_contact(self, principal: Principal, region: str, contact_id: uuid.UUID) -> None:
        """Remove a contact (messages already sent to them stay in the log)."""
        contact = await self._get(region, contact_id)
        await self.session.delete(contact)
        await self.session.flush()
        record(self.session, principal, "contact.delete", "responder_contact", contact_id,
               {"region": region, "name": contact.name, "phone": mask_phone(contact.phone)})

    async def _get(self, region: str, contact_id: uuid.UUID) -> m.ResponderContact:
        await RegionService(session=self.session).get_region(region)
        contact = await self.session.get(m.ResponderContact, contact_id)
        if contact is None or contact.region != region:
            raise NotFoundError(f"no contact {contact_id} in region {region!r}")
        return contact

    async def _require_free(self, region: str, phone: str) -> None:
        taken = await self.session.scalar(
            select(m.ResponderContact.id).where(m.ResponderContact.region == region, m.ResponderContact.phone == phone)
        )
        if taken is not None:
            raise ConflictError(f"{mask_phone(phone)} is already a contact of region {region!r} (contact {taken})")


async def active_contacts(session: AsyncSession, region: str) -> list[str]:
    """Phone numbers of the region's active responders."""
    rows = await session.scalars(
        select(m.ResponderContact.phone)
        .where(m.ResponderContact.region == region, m.ResponderContact.active)
        .order_by(m.ResponderContact.phone)
    )
    return list(rows)


# The outbound log ---------------------------------------------------------------------------


def message_out(message: m.OutboundMessage) -> MessageOut:
    """A message as the log shows it."""
    return MessageOut(
        id=message.id, incident_id=message.incident_id, region=message.region, step=message.step,
        recipient=message.recipient, body=message.body, status=message.status, provider=message.provider,
        provider_message_id=message.provider_message_id, attempts=message.attempts, last_error=message.last_error,
        created_at=message.created_at, updated_at=message.updated_at, sent_at=message.sent_at,
        delivered_at=message.delivered_at,
    )


def attempt_out(attempt: m.SmsAttempt) -> AttemptOut:
    """One attempt as the log shows it."""
    return AttemptOut(
        number=attempt.number, provider=attempt.provider, started_at=attempt.started_at,
        finished_at=attempt.finished_at, outcome=attempt.outcome, detail=attempt.detail,
    )


async def message_page(
    session: AsyncSession,
    principal: Principal,
    *,
    incident_id: uuid.UUID | None = None,
    region: str | None = None,
    status: Sequence[str] = (),
    limit: int = 50,
    offset: int = 0,
) -> Page[MessageOut]:
    """Newest first; operators and viewers see their regions' messages only."""
    query = select(m.OutboundMessage)
    if not principal.is_admin:
        query = query.where(m.OutboundMessage.region.in_(principal.regions))
    if incident_id is not None:
        query = query.where(m.OutboundMessage.incident_id == incident_id)
    if region is not None:
        query = query.where(m.OutboundMessage.region == region)
    if status:
        query = query.where(m.OutboundMessage.status.in_(status))
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(
        query.order_by(m.OutboundMessage.created_at.desc(), m.OutboundMessage.id).limit(limit).offset(offset)
    )
    return Page(items=[message_out(r) for r in rows], total=total, limit=limit, offset=offset)


async def message_detail(session: AsyncSession, principal: Principal, message_id: uuid.UUID) -> MessageDetail:
    """One message with its attempts; 404 outside the caller's regions."""
    message = await session.get(m.OutboundMessage, message_id)
    if message is None or not principal.can_see(message.region):
        raise NotFoundError(f"no message {message_id}")
    attempts = await session.scalars(
        select(m.SmsAttempt).where(m.SmsAttempt.message_id == message_id).order_by(m.SmsAttempt.number, m.SmsAttempt.id)
    )
    base = message_out(message)
    return MessageDetail(
        **{f: getattr(base, f) for f in base.__struct_fields__}, attempt_log=[attempt_out(a) for a in attempts]
    )


# Failures the monitor must see --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FailureNotice:
    """An ``sms.failed`` live event to broadcast once the failure is committed."""

    region: str
    data: dict[str, Any]


def note_failure(session: AsyncSession, message: m.OutboundMessage, now: datetime) -> FailureNotice:
    """Put the failure on the incident's timeline (same transaction) and log it; the caller broadcasts."""
    error = without_phone(message.last_error or "", message.recipient)
    payload = {
        "message_id": str(message.id),
        "step": message.step,
        "recipient": mask_phone(message.recipient),
        "attempts": message.attempts,
        "provider": message.provider,
        "error": error,
    }
    log.warning(
        "SMS %s to %s for incident %s (%s) failed after %d attempt(s): %s",
        message.id, mask_phone(message.recipient), message.incident_id, message.step, message.attempts, error,
    )
    if message.incident_id is not None:
        session.add(
            m.IncidentEvent(
                incident_id=message.incident_id, type="sms.failed", actor=SYSTEM_ACTOR, payload=payload, created_at=now
            )
        )
    return FailureNotice(
        message.region,
        {**payload, "incident_id": str(message.incident_id) if message.incident_id else None, "at": now.isoformat()},
    )


async def announce_failures(feed: LiveFeed, notices: Iterable[FailureNotice]) -> None:
    """Broadcast committed failures to their regions (the monitor's alert)."""
    for notice in notices:
        await feed.publish(notice.region, "sms.failed", notice.data)
