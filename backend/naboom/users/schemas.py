"""Login and user schemas."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec

from naboom.schemas import Schema


class LoginRequest(Schema):
    """Credentials."""

    username: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class LoginResponse(Schema):
    """A Bearer token; the same token is also set as an HttpOnly cookie."""

    token: str
    expires_in: int
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
