"""Outbound SMS: who gets alerted, every message sent, every attempt to send it."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from advanced_alchemy.base import BigIntBase, UUIDAuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column


class MessageStatus(enum.StrEnum):
    """Where an outbound message stands.

    ``queued`` waits for a worker, ``sending`` is with a worker now (its attempt's outcome is
    unknown until recorded), ``retrying`` failed and waits for its next attempt; ``sent`` the
    gateway accepted it, ``delivered`` the gateway reported the handset has it. ``failed`` ran
    out of attempts or was refused for good; ``cancelled`` was no longer needed (an escalation
    whose incident was acknowledged before the send).
    """

    QUEUED = "queued"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ResponderContact(UUIDAuditBase):
    """Someone in a region who gets an SMS the moment an incident opens there."""

    __tablename__ = "responder_contact"
    __table_args__ = (UniqueConstraint("region", "phone", name="uq_responder_contact_region_phone"),)

    region: Mapped[str] = mapped_column(ForeignKey("region.code", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class OutboundMessage(UUIDAuditBase):
    """One SMS to one recipient for one step of one incident; ``key`` makes sending idempotent."""

    __tablename__ = "outbound_message"
    __table_args__ = (Index("ix_outbound_message_status_created", "status", "created_at"),)

    # "<incident id>:<step>:<recipient>": a second enqueue of the same send is a no-op.
    key: Mapped[str] = mapped_column(String(200), unique=True)
    incident_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("incident.id", ondelete="SET NULL"), index=True, default=None
    )
    region: Mapped[str] = mapped_column(String(32), index=True)
    step: Mapped[str] = mapped_column(String(80))
    recipient: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=MessageStatus.QUEUED)
    provider: Mapped[str | None] = mapped_column(String(40), default=None)
    provider_message_id: Mapped[str | None] = mapped_column(String(100), default=None, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    # While ``sending``: until when the current attempt may take before it counts as abandoned.
    lease_until: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    sent_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class SmsAttempt(BigIntBase):
    """One try at handing a message to a gateway, with what came of it."""

    __tablename__ = "sms_attempt"

    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("outbound_message.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str | None] = mapped_column(String(40), default=None)
    started_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # accepted | error | unknown (timed out, or the worker stopped mid-send) | skipped (no provider available)
    outcome: Mapped[str | None] = mapped_column(String(16), default=None)
    detail: Mapped[str | None] = mapped_column(Text, default=None)
