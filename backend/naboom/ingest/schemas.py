"""The SOS payload and what the ingest decides about each message."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from naboom.schemas import Schema

Pid = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Nonce = int | Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class SosPayload(msgspec.Struct, kw_only=True):
    """CONTRACT §1. Unknown keys are allowed (unsigned metadata) and never trusted."""

    pid: Pid
    ts: int
    nonce: Nonce
    sig: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    msg: str = "SOS"
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)] | None = None
    lng: Annotated[float, msgspec.Meta(ge=-180, le=180)] | None = None
    acc: Annotated[float, msgspec.Meta(ge=0)] | None = None
    kid: int = 1


class Reason(enum.StrEnum):
    """Why a message was refused, in the order the checks run."""

    TOPIC_NOT_ALLOWED = "topic_not_allowed"
    MALFORMED_JSON = "malformed_json"
    INVALID_SCHEMA = "invalid_schema"
    TOPIC_MISMATCH = "topic_mismatch"
    UNKNOWN_DEVICE = "unknown_device"
    INACTIVE_DEVICE = "inactive_device"
    UNKNOWN_KID = "unknown_kid"
    REVOKED_KID = "revoked_kid"
    BAD_SIGNATURE = "bad_signature"
    STALE_TS = "stale_ts"
    FUTURE_TS = "future_ts"
    REPLAYED_NONCE = "replayed_nonce"


class Verdict(enum.StrEnum):
    """The three ways a message can end."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class Envelope(msgspec.Struct, frozen=True):
    """A message as it arrived, before anything is believed."""

    body: bytes
    transport: str
    received_at: datetime
    topic: str | None = None


class Outcome(msgspec.Struct):
    """What became of one message."""

    verdict: Verdict
    incident_id: uuid.UUID | None = None
    reason: Reason | None = None
    detail: str | None = None
    # Who sent an accepted or duplicate message, for the acknowledgement to the device.
    pid: str | None = None
    nonce: int | str | None = None


class SubmitAccepted(Schema):
    """Answer to ``POST /panic/api/submit``."""

    incident_id: uuid.UUID


class RejectionCount(Schema):
    """Rejections of one reason."""

    reason: str
    count: int


class IngestStats(Schema):
    """Counters of this process since it started, and rejections in the log."""

    accepted: int
    duplicates: int
    rejected: dict[str, int]
    logged_rejections: list[RejectionCount]


class Rejection(Schema):
    """One row of the rejection log, as admins see it."""

    id: int
    received_at: datetime
    transport: str
    topic: str | None
    pid: str | None
    reason: str
    detail: str
    size: int
    excerpt: str | None
