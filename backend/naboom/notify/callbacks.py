"""Delivery-status callbacks from Clickatell: authenticated by a shared secret, never moving a message back.

Clickatell posts a message's status as JSON (``messageId``, ``clientMessageId``, ``statusCode``,
``status``, ``statusDescription``, …). Two numbering schemes are in use: the SMS platform's
(``004`` received by recipient, ``005`` to ``012`` errors) and the newer One API's (``5``
DEVICE_ACK, ``20``+ errors); the ``status`` name, when sent, tells them apart, and decides.
Only a final status changes the log: delivered, or a delivery error; the rest (queued, at the
gateway) leave the message ``sent``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.db import models as m
from naboom.errors import AuthenticationError, NaboomError, NotFoundError, UnavailableError
from naboom.notify.schemas import CallbackResult, ClickatellCallback
from naboom.notify.service import FailureNotice, note_failure

S = m.MessageStatus
SECRET_HEADER = "x-callback-secret"

DELIVERED_NAMES = frozenset({"RECEIVED_BY_RECIPIENT", "DEVICE_ACK", "READ", "DELIVERED"})
FAILED_NAMES = frozenset({
    "ERROR_WITH_MESSAGE", "USER_CANCELLED_MESSAGE_DELIVERY", "ERROR_DELIVERING_MESSAGE", "ROUTING_ERROR",
    "MESSAGE_EXPIRED", "OUT_OF_CREDIT", "MAX_MT_EXCEEDED", "EXPIRED", "STOPPED_BY_USER", "STOPPED_BY_ADMIN",
    "DELIVERY_FAILURE", "INSUFFICIENT_ACCOUNT_BALANCE", "VOLUME_LIMIT", "VOLUME_LIMIT_DAILY", "VOLUME_LIMIT_MONTHLY",
    "RECIPIENT_DOES_NOT_EXIST",
})
# The SMS platform's numeric codes, for a callback that sends no status name.
DELIVERED_CODES = frozenset({4})
FAILED_CODES = frozenset({5, 6, 7, 9, 10, 12, 14})


def check_secret(configured: str | None, header: str | None, authorization: str | None) -> None:
    """The shared secret, from ``X-Callback-Secret`` or as the HTTP Basic password (constant-time compare)."""
    if not configured:
        raise UnavailableError(
            "SMS delivery callbacks are not configured on this server (NABOOM_SMS_CALLBACK_SECRET is unset)"
        )
    offered = header
    if offered is None and authorization and authorization[:6].lower() == "basic ":
        try:
            offered = base64.b64decode(authorization[6:].strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            offered = None
    if offered is None:
        raise AuthenticationError(
            "send the callback secret in the X-Callback-Secret header or as the HTTP Basic password"
        )
    if not hmac.compare_digest(offered.encode(), configured.encode()):
        raise AuthenticationError("wrong callback secret")


def classify(callback: ClickatellCallback) -> str | None:
    """``delivered``, ``failed``, or ``None`` for a status that settles nothing yet."""
    name = (callback.status or "").strip().upper()
    if name:
        if name in DELIVERED_NAMES:
            return S.DELIVERED
        if name in FAILED_NAMES:
            return S.FAILED
        return None
    try:
        code = int(str(callback.statusCode).strip()) if callback.statusCode is not None else None
    except ValueError:
        raise NaboomError(f"statusCode {callback.statusCode!r} is not a number") from None
    if code in DELIVERED_CODES:
        return S.DELIVERED
    if code in FAILED_CODES:
        return S.FAILED
    return None


async def apply_callback(
    session: AsyncSession, callback: ClickatellCallback, now: datetime
) -> tuple[CallbackResult, FailureNotice | None]:
    """Move the message forward as the gateway reports; the caller commits, then broadcasts a failure."""
    if not callback.messageId and not callback.clientMessageId:
        raise NaboomError("a callback needs messageId or clientMessageId")
    if callback.status is None and callback.statusCode is None:
        raise NaboomError("a callback needs status or statusCode")
    outcome = classify(callback)
    message = await _find(session, callback)
    if message is None:
        raise NotFoundError(
            f"no outbound message with provider id {callback.messageId!r} or client id {callback.clientMessageId!r}"
        )
    description = callback.statusDescription or callback.status or f"status {callback.statusCode}"
    notice = None
    changed = False
    if outcome == S.DELIVERED and message.status != S.DELIVERED:
        # The handset has it: true whatever we believed (even after an unknown outcome or giving up).
        message.status = S.DELIVERED
        message.delivered_at = now
        message.lease_until = None
        if callback.messageId and not message.provider_message_id:
            message.provider_message_id = callback.messageId
        changed = True
    elif outcome == S.FAILED and message.status == S.SENT:
        # Only a message the gateway took can fail to deliver; a delivered one stays delivered.
        message.status = S.FAILED
        message.last_error = f"delivery failed: {description}"
        notice = note_failure(session, message, now)
        changed = True
    if changed:
        message.updated_at = now
        await session.flush()
    return CallbackResult(message_id=message.id, status=message.status, changed=changed), notice


async def _find(session: AsyncSession, callback: ClickatellCallback) -> m.OutboundMessage | None:
    lock = select(m.OutboundMessage).with_for_update().execution_options(populate_existing=True)
    if callback.messageId:
        found = await session.scalar(lock.where(m.OutboundMessage.provider_message_id == callback.messageId).limit(1))
        if found is not None:
            return found
    if callback.clientMessageId:
        # Ours is the message's id: it finds a message whose accepting attempt's answer never arrived.
        try:
            message_id = uuid.UUID(callback.clientMessageId)
        except ValueError:
            return None
        return await session.scalar(lock.where(m.OutboundMessage.id == message_id))
    return None
