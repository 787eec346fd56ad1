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
from sqlalchemy import func, select, update

from naboom.db import models as m
from naboom.errors import AuthenticationError, ConflictError, NaboomError, NotFoundError
from naboom.regions.service import RegionService
from naboom.schemas import Page
from naboom.users.auth import digest
from naboom.users.schemas import UserOut, UserUpdate

_hasher = PasswordHasher()
# Verifying against this keeps unknown usernames as slow as wrong passwords.
_DUMMY_HASH = _hasher.hash("naboom-timing-equaliser")
MIN_PASSWORD_CHARS = 8


def user_out(user: m.Operator) -> UserOut:
    """A user as clients see it: never the password hash."""
    return UserOut(id=user.id, username=user.username, role=user.role, regions=list(user.regions), active=user.active)


def _check_role(role: str, regions: Sequence[str]) -> None:
    if role not in set(m.Role):
        raise NaboomError(f"role must be one of {', '.join(m.Role)}")
    if role != m.Role.ADMIN and not regions:
        raise NaboomError(f"a {role} needs at least one region")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise NaboomError(f"password must have at least {MIN_PASSWORD_CHARS} characters")


class OperatorService(SQLAlchemyAsyncRepositoryService[m.Operator]):
    """Users of the control room."""

    class Repo(SQLAlchemyAsyncRepository[m.Operator]):
        model_type = m.Operator

    repository_type = Repo

    async def create_user(self, username: str, password: str, role: str, regions: Sequence[str]) -> UserOut:
        """A new user; operators and viewers need at least one region, and every region must exist."""
        regions = sorted(set(regions))
        _check_role(role, regions)
        _check_password(password)
        await RegionService(session=self.repository.session).require(regions)
        if await self.repository.exists(username=username):
            raise ConflictError(f"user {username!r} already exists")
        user = await self.repository.add(
            m.Operator(username=username, password_hash=_hasher.hash(password), role=role, regions=regions)
        )
        return user_out(user)

    async def page(self, limit: int, offset: int) -> Page[UserOut]:
        """Users by name."""
        session = self.repository.session
        total = await session.scalar(select(func.count()).select_from(m.Operator)) or 0
        rows = await session.scalars(select(m.Operator).order_by(m.Operator.username).limit(limit).offset(offset))
        return Page(items=[user_out(u) for u in rows], total=total, limit=limit, offset=offset)

    async def get_user(self, user_id: uuid.UUID) -> m.Operator:
        """One user or 404."""
        user = await self.repository.get_one_or_none(id=user_id)
        if user is None:
            raise NotFoundError(f"no user {user_id}")
        return user

    async def update_user(self, user_id: uuid.UUID, data: UserUpdate) -> tuple[m.Operator, dict[str, object]]:
        """Change role, regions or whether the account is active; returns the user and what changed.

        Deactivation ends the user's sessions. No change may leave the system without an active admin.
        """
        await self._lock_admins()
        user = await self.get_user(user_id)
        role = data.role if data.role is not None else user.role
        regions = sorted(set(data.regions)) if data.regions is not None else list(user.regions)
        active = data.active if data.active is not None else user.active
        _check_role(role, regions)
        await RegionService(session=self.repository.session).require(regions)
        if user.role == m.Role.ADMIN and user.active and not (role == m.Role.ADMIN and active):
            await self._require_another_admin(user.id)
        changes: dict[str, object] = {}
        for name, value in (("role", role), ("regions", regions), ("active", active)):
            if getattr(user, name) != value:
                changes[name] = value
                setattr(user, name, value)
        if changes.get("active") is False:
            await self.end_sessions(user.id)
        await self.repository.session.flush()
        return user, changes

    async def set_password(self, user_id: uuid.UUID, password: str) -> m.Operator:
        """A new password; every session of the user ends."""
        _check_password(password)
        user = await self.get_user(user_id)
        user.password_hash = _hasher.hash(password)
        await self.end_sessions(user.id)
        await self.repository.session.flush()
        return user

    async def end_sessions(self, user_id: uuid.UUID) -> None:
        """Revoke every live session of a user: their tokens and cookies stop working at once."""
        await self.repository.session.execute(
            update(m.AuthSession)
            .where(m.AuthSession.operator_id == user_id, m.AuthSession.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )

    async def _lock_admins(self) -> None:
        # Two admins demoting each other at once must not both succeed: every change that can
        # remove an admin first locks the active admins' rows, always in the same order.
        await self.repository.session.execute(
            select(m.Operator.id)
            .where(m.Operator.role == m.Role.ADMIN, m.Operator.active.is_(True))
            .order_by(m.Operator.id)
            .with_for_update()
        )

    async def _require_another_admin(self, user_id: uuid.UUID) -> None:
        others = await self.repository.session.scalar(
            select(func.count())
            .select_from(m.Operator)
            .where(m.Operator.role == m.Role.ADMIN, m.Operator.active.is_(True), m.Operator.id != user_id)
        )
        if not others:
            raise ConflictError("this would leave no active admin; make another user admin first")

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
