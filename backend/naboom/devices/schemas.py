"""Device schemas: clients never set ids, kids or secrets."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from naboom.schemas import Schema

Region = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]


class DeviceCreate(Schema):
    """What an admin may say about a new device."""

    pid: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
    region: Region
    label: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class DeviceCredentials(Schema, omit_defaults=True):
    """The only time a secret leaves the system: at creation and rotation.

    ``mqtt_username``/``mqtt_password``: the device's broker login, present only when this
    deployment manages broker accounts (``NABOOM_MQTT_ADMIN_URL``) and the call made one.
    """

    pid: str
    kid: int
    secret: str
    mqtt_username: str | None = None
    mqtt_password: str | None = None


class KeyOut(Schema):
    """A key without its secret."""

    kid: int
    state: str
    grace_until: datetime | None
    created_at: datetime


class DeviceOut(Schema):
    """A device as admins see it."""

    id: uuid.UUID
    pid: str
    region: str
    label: str | None
    active: bool
    last_seen_at: datetime | None
    last_message: str | None
    created_at: datetime
    keys: list[KeyOut]
    # The latest telemetry report (device/{pid}/telemetry), when the device sends them.
    battery: int | None = None
    signal_dbm: int | None = None
    firmware: str | None = None
    telemetry_at: datetime | None = None
