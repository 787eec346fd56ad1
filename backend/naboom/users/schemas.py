"""Login and user schemas."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from naboom.schemas import Schema


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
