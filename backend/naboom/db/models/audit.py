"""The audit log: who did what, when, from where."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from advanced_alchemy.base import BigIntBase
from advanced_alchemy.types import GUID, DateTimeUTC, JsonB
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column


class AuditEntry(BigIntBase):
    """One action by an operator or admin; written in the same transaction as the change."""

    __tablename__ = "audit_entry"

    at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(100), index=True)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(GUID, default=None)
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(60), index=True)
    target_type: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[str | None] = mapped_column(String(100), default=None, index=True)
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(JsonB, default=dict)
