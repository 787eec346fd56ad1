"""Operators: creation with argon2 hashes, and login."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from naboom.db import models as m
from naboom.errors import AuthenticationError, ConflictError, NaboomError
from naboom.users.auth import digest
from naboom.users.schemas import UserOut

_hasher = PasswordHasher()
# Verifying against this keeps unknown usernames as slow as wrong passwords.
_DUMMY_HASH = _hasher.hash("naboom-timing-equaliser")


class OperatorService(SQLAlchemyAsyncRepositoryService[m.Operator]):
    """Users of the control room."""

    class Repo(SQLAlchemyAsyncRepository[m.Operator]):
        model_type = m.Operator

    repository_type = Repo

    async def create_user(self, username: str, password: str, role: str, regions: Sequence[str]) -> UserOut:
        """A new user; operators and viewers need at least one region."""
        if role not in set(m.Role):
            raise NaboomError(f"role must be one of {', '.join(m.Role)}")
        if role != m.Role.ADMIN and not regions:
            raise NaboomError(f"a {role} needs at least one --region")
        if len(password) < 8:
            raise NaboomError("password must have at least 8 characters")
        if await self.repository.exists(username=username):
            raise ConflictError(f"user {username!r} already exists")
        user = await self.repository.add(
            m.Operator(username=username, password_hash=_hasher.hash(password), role=role, regions=list(regions))
        )
        return UserOut(id=user.id, username=user.username, role=user.role, regions=user.regions, active=user.active)

    async def authenticate(self, username: str, password: str) -> m.Operator:
        """The user for correct credentials, else :class:`AuthenticationError`."""
        user = await self.repository.get_one_or_none(username=username)
        try:
            _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            user = None
        if user is None or not user.active:
            raise AuthenticationError("wrong username or password")
        return user

    async def open_session(
        self, user: m.Operator, ttl: timedelta, ip: str | None, user_agent: str | None
    ) -> tuple[m.AuthSession, str]:
        """A new session and its CSRF token (returned once, stored hashed)."""
        now = datetime.now(UTC)
        csrf = secrets.token_urlsafe(32)
        session = m.AuthSession(
            id=uuid.uuid4(),
            operator_id=user.id,
            created_at=now,
            expires_at=now + ttl,
            csrf_hash=digest(csrf),
            ip=ip,
            user_agent=(user_agent or "")[:300] or None,
        )
        self.repository.session.add(session)
        await self.repository.session.flush()
        return session, csrf

    async def close_session(self, session_id: uuid.UUID) -> None:
        """Logout: the session's token stops working at once."""
        session = await self.repository.session.get(m.AuthSession, session_id)
        if session is not None and session.revoked_at is None:
            session.revoked_at = datetime.now(UTC)
