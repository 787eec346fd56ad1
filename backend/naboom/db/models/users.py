"""People who use the control room."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from advanced_alchemy.base import UUIDAuditBase, UUIDBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column


class Role(enum.StrEnum):
    """What a user may do: admins everything; operators and viewers only their regions."""

    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


class Operator(UUIDAuditBase):
    """A control-room user with an argon2 password hash."""

    __tablename__ = "operator"

    username: Mapped[str] = mapped_column(String(100), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default=Role.OPERATOR)
    regions: Mapped[list[str]] = mapped_column(JsonB, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class AuthSession(UUIDBase):
    """A login: its id is the token's ``jti``; logout or expiry ends it."""

    __tablename__ = "auth_session"

    operator_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("operator.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # SHA-256 of the CSRF token a cookie-authenticated browser must echo on unsafe requests.
    csrf_hash: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(300), default=None)
