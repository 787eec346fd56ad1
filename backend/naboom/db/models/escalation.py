"""Escalation rules and the levels each incident has gone through."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from advanced_alchemy.base import BigIntBase, UUIDAuditBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column


class EscalationCondition(enum.StrEnum):
    """When an incident still needs escalating."""

    OPEN = "open"  # nobody has acknowledged it
    UNRESOLVED = "unresolved"  # it is not resolved or cancelled


class EscalationRule(UUIDAuditBase):
    """For one region: ordered levels, each fired once when an incident still meets the condition."""

    __tablename__ = "escalation_rule"

    region: Mapped[str] = mapped_column(ForeignKey("region.code", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    condition: Mapped[str] = mapped_column(String(16), default=EscalationCondition.OPEN)
    # [{"threshold_minutes": 5, "targets": ["+27..."], "template": "..."}, ...] in firing order.
    levels: Mapped[list[dict[str, Any]]] = mapped_column(JsonB, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class IncidentEscalation(BigIntBase):
    """One level of one rule fired for one incident (the unique key makes it fire once)."""

    __tablename__ = "incident_escalation"
    __table_args__ = (UniqueConstraint("incident_id", "rule_id", "level", name="uq_incident_escalation_level"),)

    incident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"), index=True)
    rule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("escalation_rule.id", ondelete="CASCADE"), index=True)
    level: Mapped[int] = mapped_column(Integer)
    fired_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
