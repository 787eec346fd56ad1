"""``/api/devices``: the admin side of the CLI's ``device`` commands, and more."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.audit.service import record
from naboom.devices.broker import BrokerAdmin, set_device_login
from naboom.devices.schemas import DeviceCreate, DeviceCredentials, DeviceOut
from naboom.devices.service import DeviceService, device_out
from naboom.ingest.schemas import Rejection
from naboom.openapi import problems
from naboom.schemas import Limit, Offset, Page
from naboom.users.auth import AuthRequest
from naboom.users.guards import admin_only


class DeviceController(Controller):
    """Admins manage devices and keys; a secret is in the answer to creation and rotation only."""

    path = "/api/devices"
    tags = ["devices"]
    guards = [admin_only]

    @get("/")
    async def list_devices(
        self,
        db_session: NamedDependency[AsyncSession],
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[DeviceOut]:
        """Every device with when it was last seen, its last message and its keys (never their secrets)."""
        return await DeviceService(session=db_session).page(limit, offset)

    @post(
        "/",
        responses=problems(409, 503, why={
            409: "A device with that pid already exists",
            503: "The broker could not make the device's login; nothing was saved",
        }),
    )
    async def create_device(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], data: JSONBody[DeviceCreate]
    ) -> DeviceCredentials:
        """Register a device in an existing region; the answer holds its secret, shown only this once.

        When the deployment manages broker accounts, the answer also holds the device's broker
        login. The admin connection opens before anything is written and the account is made
        before the commit, so either both exist or (broker down: 503) neither does.
        """
        service = DeviceService(session=db_session)
        admin_url = request.app.state.settings.mqtt_admin_url
        if admin_url is None:
            credentials = await service.create_device(data)
        else:
            async with BrokerAdmin.from_url(admin_url) as broker:
                credentials = await service.create_device(data)
                account = await broker.provision_device(data.pid)
            credentials = msgspec.structs.replace(
                credentials, mqtt_username=account.username, mqtt_password=account.password
            )
        detail: dict[str, object] = {"region": data.region, "label": data.label, "kid": credentials.kid}
        if credentials.mqtt_username is not None:
            detail["broker_account"] = True
        record(db_session, request.user, "device.create", "device", data.pid, detail)
        return credentials

    @get("/{pid:str}")
    async def get_device(self, db_session: NamedDependency[AsyncSession], pid: FromPath[str]) -> DeviceOut:
        """One device with its keys (never their secrets)."""
        return await DeviceService(session=db_session).detail(pid)

    @post("/{pid:str}/rotate", status_code=201)
    async def rotate_key(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], pid: FromPath[str]
    ) -> DeviceCredentials:
        """A new key, its secret shown only this once; the old key keeps working for the grace period."""
        grace = timedelta(seconds=request.app.state.settings.key_grace_seconds)
        credentials = await DeviceService(session=db_session).rotate(pid, grace)
        record(db_session, request.user, "device.rotate", "device", pid,
               {"kid": credentials.kid, "grace_seconds": int(grace.total_seconds())})
        return credentials

    @post(
        "/{pid:str}/keys/{kid:int}/revoke",
        status_code=200,
        responses=problems(409, why={409: "The key is already revoked"}),
    )
    async def revoke_key(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], pid: FromPath[str], kid: FromPath[int]
    ) -> DeviceOut:
        """Refuse a key at once, grace period or not (a lost or leaked secret)."""
        device = await DeviceService(session=db_session).revoke_key(pid, kid)
        record(db_session, request.user, "device.revoke_key", "device", pid, {"kid": kid})
        return device_out(device)

    @post("/{pid:str}/deactivate", status_code=200,
          responses=problems(503, why={503: "The broker could not disable the device's login"}))
    async def deactivate(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], pid: FromPath[str]
    ) -> DeviceOut:
        """Refuse every message from the device until it is activated again (and its broker login, if managed)."""
        # The broker first, before the transaction begins: when it is down the answer is 503
        # and nothing changed; repeating is harmless either way.
        await set_device_login(request.app.state.settings, pid, False)
        device = await DeviceService(session=db_session).set_active(pid, False)
        record(db_session, request.user, "device.deactivate", "device", pid)
        return device_out(device)

    @post("/{pid:str}/activate", status_code=200,
          responses=problems(503, why={503: "The broker could not enable the device's login"}))
    async def activate(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], pid: FromPath[str]
    ) -> DeviceOut:
        """Accept the device's messages (and broker login, if managed) again."""
        await set_device_login(request.app.state.settings, pid, True)
        device = await DeviceService(session=db_session).set_active(pid, True)
        record(db_session, request.user, "device.activate", "device", pid)
        return device_out(device)

    @get("/{pid:str}/rejections")
    async def rejections(
        self,
        db_session: NamedDependency[AsyncSession],
        pid: FromPath[str],
        reason: Annotated[str | None, QueryParameter(max_length=32)] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[Rejection]:
        """What the ingest refused from this device and why, newest first (no secrets, no signatures)."""
        return await DeviceService(session=db_session).rejections(pid, reason=reason, limit=limit, offset=offset)
