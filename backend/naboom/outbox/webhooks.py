"""Webhooks: admins point incident events at an HTTP endpoint; deliveries are signed outbox rows."""

from __future__ import annotations

import enum
import secrets
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.audit.service import record
from naboom.db import models as m
from naboom.errors import NaboomError, NotFoundError
from naboom.regions.schemas import RegionCode
from naboom.schemas import Page, Schema
from naboom.users.auth import Principal

WebhookUrl = Annotated[
    str, msgspec.Meta(min_length=1, max_length=2000, examples=["https://example.org/naboom"])
]
WebhookSecret = Annotated[str, msgspec.Meta(min_length=16, max_length=200)]


class WebhookEvent(enum.StrEnum):
    """What a webhook can be told about."""

    INCIDENT_CREATED = "incident.created"
    INCIDENT_UPDATED = "incident.updated"


EventTypes = Annotated[list[WebhookEvent], msgspec.Meta(min_length=1, max_length=2)]


class InvalidWebhook(NaboomError):
    """The webhook cannot work as given."""

    status_code = 422
    title = "Unprocessable Content"


class WebhookCreate(Schema):
    """A new webhook; without ``secret`` one is generated (and returned once)."""

    url: WebhookUrl
    event_types: EventTypes
    region: RegionCode | None = None
    secret: WebhookSecret | None = None
    active: bool = True


class WebhookUpdate(Schema):
    """What may change about a webhook (the secret does not: create a new webhook to rotate it)."""

    url: WebhookUrl | None = None
    event_types: EventTypes | None = None
    region: RegionCode | None = None
    active: bool | None = None


class WebhookOut(Schema):
    """A webhook as admins see it: the secret only as a hint."""

    id: uuid.UUID
    url: str
    event_types: list[str]
    region: str | None
    active: bool
    secret_hint: str
    created_at: datetime


class WebhookCreated(WebhookOut):
    """The answer to a creation: the only time the secret is shown."""

    secret: str


def webhook_out(hook: m.Webhook) -> WebhookOut:
    return WebhookOut(
        id=hook.id,
        url=hook.url,
        event_types=list(hook.event_types),
        region=hook.region,
        active=hook.active,
        secret_hint=f"…{hook.secret[-4:]}",
        created_at=hook.created_at,
    )


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host, or 422."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise InvalidWebhook(f"url is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise InvalidWebhook("url must start with http:// or https://")
    if not host:
        raise InvalidWebhook("url must name a host")
    if any(c.isspace() for c in url):
        raise InvalidWebhook("url must not contain whitespace")
    return url


def _audited(out: WebhookOut) -> dict[str, Any]:
    data = msgspec.to_builtins(out)
    data.pop("created_at", None)
    return data


async def _require_region(session: AsyncSession, code: str | None) -> None:
    if code is not None and await session.get(m.Region, code) is None:
        raise InvalidWebhook(f"unknown region {code!r}")


async def page(session: AsyncSession, *, limit: int, offset: int) -> Page[WebhookOut]:
    """Webhooks, oldest first."""
    total = await session.scalar(select(func.count()).select_from(m.Webhook)) or 0
    rows = await session.scalars(
        select(m.Webhook).order_by(m.Webhook.created_at, m.Webhook.id).limit(limit).offset(offset)
    )
    return Page(items=[webhook_out(r) for r in rows], total=total, limit=limit, offset=offset)


async def get_webhook(session: AsyncSession, webhook_id: uuid.UUID) -> m.Webhook:
    """One webhook or 404."""
    hook = await session.get(m.Webhook, webhook_id)
    if hook is None:
        raise NotFoundError(f"no webhook {webhook_id}")
    return hook


async def create_webhook(session: AsyncSession, principal: Principal, data: WebhookCreate) -> WebhookCreated:
    """A new webhook; it receives the events committed after this."""
    await _require_region(session, data.region)
    hook = m.Webhook(
        id=uuid.uuid4(),
        url=check_url(data.url),
        secret=data.secret or secrets.token_urlsafe(32),
        event_types=sorted({str(e) for e in data.event_types}),
        region=data.region,
        active=data.active,
        created_at=datetime.now(UTC),
    )
    session.add(hook)
    await session.flush()
    out = webhook_out(hook)
    record(session, principal, "webhook.create", "webhook", hook.id, _audited(out))
    return WebhookCreated(**msgspec.structs.asdict(out), secret=hook.secret)


async def update_webhook(
    session: AsyncSession, principal: Principal, webhook_id: uuid.UUID, data: WebhookUpdate
) -> WebhookOut:
    """Change what is given; deliveries already queued keep going to the current URL."""
    hook = await get_webhook(session, webhook_id)
    before = _audited(webhook_out(hook))
    if data.url is not None:
        hook.url = check_url(data.url)
    if data.event_types is not None:
        hook.event_types = sorted({str(e) for e in data.event_types})
    if data.region is not None:
        await _require_region(session, data.region)
        hook.region = data.region
    if data.active is not None:
        hook.active = data.active
    await session.flush()
    out = webhook_out(hook)
    record(
        session, principal, "webhook.update", "webhook", hook.id, {"before": before, "after": _audited(out)}
    )
    return out


async def delete_webhook(session: AsyncSession, principal: Principal, webhook_id: uuid.UUID) -> None:
    """Remove a webhook; its undelivered events are dropped by the bridge."""
    hook = await get_webhook(session, webhook_id)
    before = _audited(webhook_out(hook))
    await session.execute(delete(m.Webhook).where(m.Webhook.id == hook.id))
    record(session, principal, "webhook.delete", "webhook", webhook_id, before)
