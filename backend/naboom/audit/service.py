"""The audit log: every operator and admin action, written in the action's own transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.audit.schemas import AuditOut
from naboom.db import models as m
from naboom.schemas import Page
from naboom.users.auth import Principal


def record(
    session: AsyncSession,
    actor: Principal | None,
    action: str,
    target_type: str,
    target_id: str | uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
    *,
    actor_name: str | None = None,
) -> None:
    """Add an audit entry to the current transaction (it commits or rolls back with the change)."""
    session.add(
        m.AuditEntry(
            at=datetime.now(UTC),
            actor=actor.username if actor else (actor_name or "system"),
            actor_id=actor.id if actor else None,
            role=actor.role if actor else "system",
            action=action,
            target_type=target_type,
            target_id=str(target_id) if target_id is not None else None,
            ip=actor.ip if actor else None,
            detail=detail or {},
        )
    )


async def page(
    session: AsyncSession,
    *,
    actor: str | None,
    action: str | None,
    target_type: str | None,
    target_id: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> Page[AuditOut]:
    """Newest first, filtered."""
    query = select(m.AuditEntry)
    if actor:
        query = query.where(m.AuditEntry.actor == actor)
    if action:
        query = query.where(m.AuditEntry.action == action)
    if target_type:
        query = query.where(m.AuditEntry.target_type == target_type)
    if target_id:
        query = query.where(m.AuditEntry.target_id == target_id)
    if since:
        query = query.where(m.AuditEntry.at >= since)
    if until:
        query = query.where(m.AuditEntry.at < until)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(query.order_by(m.AuditEntry.id.desc()).limit(limit).offset(offset))
    items = [
        AuditOut(
            id=r.id, at=r.at, actor=r.actor, role=r.role, action=r.action, target_type=r.target_type,
            target_id=r.target_id, ip=r.ip, detail=r.detail,
        )
        for r in rows
    ]
    return Page(items=items, total=total, limit=limit, offset=offset)
