"""A device's credentials: the JSON ``naboom device create`` prints, optionally with its broker login."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class CredentialsError(ValueError):
    """The credentials file is missing, not JSON, or lacks what a device needs to sign."""


@dataclass(frozen=True)
class Credentials:
    """Who the device is (``pid``), which key signs (``kid``, ``secret``) and how it logs in to the broker."""

    pid: str
    kid: int
    secret: str
    mqtt_username: str | None = None
    mqtt_password: str | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str = "credentials") -> Credentials:
        """Validate the printed JSON object; errors name ``where`` and the offending key."""
        if not isinstance(data, dict):
            raise CredentialsError(f"{where}: expected a JSON object with pid, kid and secret")
        pid, kid, secret = data.get("pid"), data.get("kid", 1), data.get("secret")
        if not isinstance(pid, str) or not 1 <= len(pid) <= 64:
            raise CredentialsError(f"{where}: 'pid' must be a string of 1 to 64 characters")
        if not isinstance(kid, int) or isinstance(kid, bool):
            raise CredentialsError(f"{where}: 'kid' must be an integer")
        if not isinstance(secret, str):
            raise CredentialsError(f"{where}: 'secret' must be the base64 secret")
        try:
            base64.b64decode(secret, validate=True)
        except binascii.Error:
            raise CredentialsError(f"{where}: 'secret' is not valid base64") from None
        username, password = data.get("mqtt_username"), data.get("mqtt_password")
        for key, value in (("mqtt_username", username), ("mqtt_password", password)):
            if value is not None and not isinstance(value, str):
                raise CredentialsError(f"{where}: {key!r} must be a string")
        return cls(pid=pid, kid=kid, secret=secret, mqtt_username=username, mqtt_password=password)

    def with_login(self, username: str | None, password: str | None) -> Credentials:
        """These credentials with the broker login overridden where given (the ``--username/--password`` flags)."""
        return Credentials(
            pid=self.pid,
            kid=self.kid,
            secret=self.secret,
            mqtt_username=username if username is not None else self.mqtt_username,
            mqtt_password=password if password is not None else self.mqtt_password,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, without absent broker login keys."""
        data: dict[str, Any] = {"pid": self.pid, "kid": self.kid, "secret": self.secret}
        if self.mqtt_username is not None:
            data["mqtt_username"] = self.mqtt_username
        if self.mqtt_password is not None:
            data["mqtt_password"] = self.mqtt_password
        return data


def load_credentials(path: Path) -> Credentials:
    """One device's credentials from a JSON file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CredentialsError(f"{path}: cannot read credentials ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CredentialsError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    return Credentials.from_dict(data, str(path))


def load_devices(path: Path) -> list[Credentials]:
    """Many devices' credentials, one JSON object a line (blank lines ignored)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise CredentialsError(f"{path}: cannot read devices ({exc.strerror})") from None
    devices = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CredentialsError(f"{path}:{number}: not JSON ({exc.msg})") from None
        devices.append(Credentials.from_dict(data, f"{path}:{number}"))
    if not devices:
        raise CredentialsError(f"{path}: no devices")
    return devices
