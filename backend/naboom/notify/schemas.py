"""Schemas of the SMS domain: responder contacts, the outbound log, providers, delivery callbacks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from naboom.schemas import Schema

ContactName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
# Loosely bounded here; the service normalises it and checks it is E.164 (with a useful message).
PhoneIn = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=32, description="E.164: `+`, country code and number, 8 to 15 digits"),
]


class ContactCreate(Schema):
    """A new responder contact of a region."""

    name: ContactName
    phone: PhoneIn
    active: bool = True


class ContactUpdate(Schema):
    """What may change about a contact."""

    name: ContactName | None = None
    phone: PhoneIn | None = None
    active: bool | None = None


class ContactOut(Schema):
    """Someone who gets an SMS the moment an incident opens in their region."""

    id: uuid.UUID
    region: str
    name: str
    phone: str
    active: bool
    created_at: datetime
    updated_at: datetime


class AttemptOut(Schema):
    """One try at handing a message to a gateway.

    ``outcome``: ``accepted``; ``error`` (refused, see ``detail``); ``unknown`` (no answer in time,
    or the worker stopped mid-send: the gateway may have it); ``skipped`` (no provider available);
    none while the attempt is in progress.
    """

    number: int
    provider: str | None
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    detail: str | None


class MessageOut(Schema):
    """One outbound SMS and where it stands."""

    id: uuid.UUID
    incident_id: uuid.UUID | None
    region: str
    step: str
    recipient: str
    body: str
    status: str
    provider: str | None
    provider_message_id: str | None
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None


class MessageDetail(MessageOut):
    """A message with every attempt to send it, oldest first."""

    attempt_log: list[AttemptOut] = msgspec.field(default_factory=list)


class BreakerOut(Schema):
    """A provider's circuit breaker (``half_open``: the next call is a trial)."""

    state: str
    failures: int
    open_until: datetime | None
    last_error: str | None


class ProviderOut(Schema):
    """A configured SMS provider and its breaker."""

    name: str
    kind: str
    role: str
    url: str | None
    # Why it cannot send (a missing setting), if it cannot.
    problem: str | None
    breaker: BreakerOut


class ClickatellCallback(msgspec.Struct, kw_only=True):
    """A message status callback as Clickatell's Platform posts it (JSON); members it may add later are ignored."""

    messageId: str | None = None  # camelCase: the gateway's member names
    clientMessageId: str | None = None
    requestId: str | None = None
    integrationName: str | None = None
    to: str | None = None
    statusCode: int | str | None = None
    status: str | None = None
    statusDescription: str | None = None
    timestamp: int | float | None = None


class CallbackResult(Schema):
    """What a delivery callback did to the message."""

    message_id: uuid.UUID
    status: str
    changed: bool
