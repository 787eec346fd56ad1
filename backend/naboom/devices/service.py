"""Devices and their keys: create, rotate, revoke, (de)activate, list."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import func, select

from naboom.db import models as m
from naboom.devices.schemas import DeviceCreate, DeviceCredentials, DeviceOut, KeyOut
from naboom.errors import ConflictError, NotFoundError
from naboom.ingest.schemas import Rejection
from naboom.ingest.service import IngestService
from naboom.regions.service import RegionService
from naboom.schemas import Page

SECRET_BYTES = 32


def new_secret() -> str:
    """32 random bytes, base64 as devices expect."""
    return base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def device_out(device: m.Device) -> DeviceOut:
    """A device without secrets."""
    return DeviceOut(
        id=device.id,
        pid=device.pid,
        region=device.region,
        label=device.label,
        active=device.active,
        last_seen_at=device.last_seen_at,
        last_message=device.last_message,
        created_at=device.created_at,
        keys=[KeyOut(kid=k.kid, state=k.state, grace_until=k.grace_until, created_at=k.created_at) for k in device.keys],
        battery=device.battery,
        signal_dbm=device.signal_dbm,
        firmware=device.firmware,
        telemetry_at=device.telemetry_at,
    )


class DeviceService(SQLAlchemyAsyncRepositoryService[m.Device]):
    """The fleet of panic buttons."""

    class Repo(SQLAlchemyAsyncRepository[m.Device]):
        model_type = m.Device

    repository_type = Repo

    async def create_device(self, data: DeviceCreate) -> DeviceCredentials:
        """Register a device with its first key (kid 1) in an existing region."""
        await RegionService(session=self.repository.session).require([data.region])
        if await self.repository.exists(pid=data.pid):
            raise ConflictError(f"device {data.pid!r} already exists")
        secret = new_secret()
        device = m.Device(pid=data.pid, region=data.region, label=data.label, active=True)
        device.keys = [m.DeviceKey(kid=1, secret=secret, state=m.KeyState.CURRENT)]
        await self.repository.add(device)
        return DeviceCredentials(pid=data.pid, kid=1, secret=secret)

    async def rotate(self, pid: str, grace: timedelta, now: datetime | None = None) -> DeviceCredentials:
        """A new current key; the old current key verifies until ``grace`` has passed."""
        now = now or datetime.now(UTC)
        device = await self.get_device(pid, lock=True)
        for key in device.keys:
            if key.state == m.KeyState.CURRENT:
                key.state = m.KeyState.GRACE
                key.grace_until = now + grace
        kid = max((k.kid for k in device.keys), default=0) + 1
        secret = new_secret()
        device.keys.append(m.DeviceKey(kid=kid, secret=secret, state=m.KeyState.CURRENT))
        await self.repository.session.flush()
        return DeviceCredentials(pid=pid, kid=kid, secret=secret)

    async def revoke_key(self, pid: str, kid: int) -> m.Device:
        """Stop accepting a key at once (a lost or leaked secret); no grace period."""
        device = await self.get_device(pid, lock=True)
        key = next((k for k in device.keys if k.kid == kid), None)
        if key is None:
            raise NotFoundError(f"device {pid!r} has no key {kid}")
        if key.state == m.KeyState.REVOKED:
            raise ConflictError(f"key {kid} of {pid!r} is already revoked")
        key.state = m.KeyState.REVOKED
        await self.repository.session.flush()
        return device

    async def set_active(self, pid: str, active: bool) -> m.Device:
        """Deactivate (its messages are refused) or reactivate a device; repeating is harmless."""
        device = await self.get_device(pid)
        device.active = active
        await self.repository.session.flush()
        return device

    async def detail(self, pid: str) -> DeviceOut:
        """One device with its keys (never their secrets)."""
        return device_out(await self.get_device(pid))

    async def rejections(self, pid: str, *, reason: str | None, limit: int, offset: int) -> Page[Rejection]:
        """The ingest's rejection log for one known device, newest first."""
        await self.get_device(pid)
        return await IngestService.rejections(
            self.repository.session, reason=reason, pid=pid, limit=limit, offset=offset
        )

    async def page(self, limit: int, offset: int) -> Page[DeviceOut]:
        """Devices ordered by pid."""
        session = self.repository.session
        total = await session.scalar(select(func.count()).select_from(m.Device)) or 0
        rows = await session.scalars(select(m.Device).order_by(m.Device.pid).limit(limit).offset(offset))
        return Page(items=[device_out(d) for d in rows], total=total, limit=limit, offset=offset)

    async def get_device(self, pid: str, *, lock: bool = False) -> m.Device:
        """One device or 404; ``lock`` holds its row until commit (key changes never interleave)."""
        query = select(m.Device).where(m.Device.pid == pid)
        device = await self.repository.session.scalar(query.with_for_update() if lock else query)
        if device is None:
            raise NotFoundError(f"no device {pid!r}")
        return device
