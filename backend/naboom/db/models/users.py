"""People who use the control room."""

from __future__ import annotations

import enum

from advanced_alchemy.base import UUIDAuditBase
from advanced_alchemy.types import JsonB
from sqlalchemy import Boolean, String
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
