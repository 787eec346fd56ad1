"""Operators: creation with argon2 hashes, and login."""

from __future__ import annotations

from collections.abc import Sequence

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from naboom.db import models as m
from naboom.errors import AuthenticationError, ConflictError, NaboomError
from naboom.users.auth import Principal
from naboom.users.schemas import UserOut

_hasher = PasswordHasher()
# Verifying against this keeps unknown usernames as slow as wrong passwords.
_DUMMY_HASH = _hasher.hash("naboom-timing-equaliser")


def principal_of(user: m.Operator) -> Principal:
    """The principal a user logs in as."""
    return Principal(id=user.id, username=user.username, role=user.role, regions=tuple(user.regions))


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

    async def authenticate(self, username: str, password: str) -> Principal:
        """The principal for correct credentials, else :class:`AuthenticationError`."""
        user = await self.repository.get_one_or_none(username=username)
        try:
            _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            user = None
        if user is None or not user.active:
            raise AuthenticationError("wrong username or password")
        return principal_of(user)
