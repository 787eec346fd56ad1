"""Audit log schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from naboom.schemas import Schema


class AuditOut(Schema):
    """One audit entry."""

    id: int
    at: datetime
    actor: str
    role: str
    action: str
    target_type: str
    target_id: str | None
    ip: str | None
    detail: dict[str, Any]
