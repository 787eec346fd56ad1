"""Login and user schemas."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from naboom.regions.schemas import RegionCode
from naboom.schemas import Schema

Username = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._@-]+$")]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=1000)]
RoleName = Literal["admin", "operator", "viewer"]
Regions = Annotated[list[RegionCode], msgspec.Meta(max_length=200)]


class LoginRequest(Schema):
    """Credentials."""

    username: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class LoginResponse(Schema):
    """A Bearer token (also set as an HttpOnly cookie) and the CSRF token cookie users must echo."""

    token: str
    csrf_token: str
    expires_in: int
    expires_at: datetime
    username: str
    role: str
    regions: list[str]


class UserCreate(Schema):
    """A new user; operators and viewers need at least one region, and every region must exist."""

    username: Username
    password: Password
    role: RoleName
    regions: Regions = msgspec.field(default_factory=list)


class UserUpdate(Schema):
    """What an admin may change about a user (never the name, id or password hash)."""

    role: RoleName | None = None
    regions: Regions | None = None
    active: bool | None = None


class PasswordReset(Schema):
    """A new password; the user's sessions end."""

    password: Password


class UserOut(Schema):
    """A user without secrets."""

    id: uuid.UUID
    username: str
    role: str
    regions: list[str]
    active: bool


class Me(Schema):
    """The caller."""

    id: uuid.UUID
    username: str
    role: str
    regions: list[str]
