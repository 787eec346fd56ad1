"""``/api/devices``: the admin side of the CLI's ``device`` commands."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.devices.schemas import DeviceCreate, DeviceCredentials, DeviceOut
from naboom.devices.service import DeviceService
from naboom.schemas import Page
from naboom.users.guards import admin_only


class DeviceController(Controller):
    """Admins manage devices and keys."""

    path = "/api/devices"
    tags = ["devices"]
    guards = [admin_only]

    @get("/")
    async def list_devices(
        self,
        db_session: NamedDependency[AsyncSession],
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        offset: Annotated[int, QueryParameter(ge=0)] = 0,
    ) -> Page[DeviceOut]:
        """Every device with its keys (never their secrets)."""
        return await DeviceService(session=db_session).page(limit, offset)

    @post("/")
    async def create_device(self, db_session: NamedDependency[AsyncSession], data: JSONBody[DeviceCreate]) -> DeviceCredentials:
        """Register a device; the answer holds its secret, shown only this once."""
        return await DeviceService(session=db_session).create_device(data)

    @post("/{pid:str}/rotate", status_code=201)
    async def rotate_key(self, request: Request, db_session: NamedDependency[AsyncSession], pid: FromPath[str]) -> DeviceCredentials:
        """A new key; the old one keeps working for the grace period."""
        grace = timedelta(seconds=request.app.state.settings.key_grace_seconds)
        return await DeviceService(session=db_session).rotate(pid, grace)
