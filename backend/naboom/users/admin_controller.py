"""``/api/users``: admins manage control-room users."""

from __future__ import annotations

import uuid

from litestar import Controller, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.audit.service import record
from naboom.openapi import problems
from naboom.schemas import Limit, Offset, Page
from naboom.users.auth import AuthRequest
from naboom.users.guards import admin_only
from naboom.users.schemas import PasswordReset, UserCreate, UserOut, UserUpdate
from naboom.users.service import OperatorService, user_out

_LAST_ADMIN = {409: "The change would leave no active admin"}


class UserAdminController(Controller):
    """Users, roles and regions (admins only); password hashes never leave the server."""

    path = "/api/users"
    tags = ["users"]
    guards = [admin_only]

    @get("/")
    async def list_users(
        self,
        db_session: NamedDependency[AsyncSession],
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[UserOut]:
        """Every user by name."""
        return await OperatorService(session=db_session).page(limit, offset)

    @post("/", responses=problems(409, why={409: "A user of that name already exists"}))
    async def create_user(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], data: JSONBody[UserCreate]
    ) -> UserOut:
        """A new user; the regions must exist."""
        user = await OperatorService(session=db_session).create_user(
            data.username, data.password, data.role, data.regions
        )
        record(db_session, request.user, "user.create", "operator", user.id,
               {"username": user.username, "role": user.role, "regions": user.regions})
        return user

    @get("/{user_id:uuid}")
    async def get_user(self, db_session: NamedDependency[AsyncSession], user_id: FromPath[uuid.UUID]) -> UserOut:
        """One user."""
        return user_out(await OperatorService(session=db_session).get_user(user_id))

    @patch("/{user_id:uuid}", responses=problems(409, why=_LAST_ADMIN))
    async def update_user(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        user_id: FromPath[uuid.UUID],
        data: JSONBody[UserUpdate],
    ) -> UserOut:
        """Change role, regions or ``active``; deactivation ends the user's sessions, role changes apply at once."""
        user, changes = await OperatorService(session=db_session).update_user(user_id, data)
        record(db_session, request.user, "user.update", "operator", user.id, {"username": user.username, **changes})
        return user_out(user)

    @post("/{user_id:uuid}/password", status_code=200)
    async def reset_password(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        user_id: FromPath[uuid.UUID],
        data: JSONBody[PasswordReset],
    ) -> UserOut:
        """Set a new password; every session of that user ends."""
        user = await OperatorService(session=db_session).set_password(user_id, data.password)
        record(db_session, request.user, "user.password_reset", "operator", user.id, {"username": user.username})
        return user_out(user)
