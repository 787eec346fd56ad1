"""Device accounts on a production Mosquitto, managed live through its Dynamic Security plugin.

An admin user publishes JSON commands to ``$CONTROL/dynamic-security/v1`` and reads the
answers on ``.../response``; the broker applies them at once and rewrites its own file, so
no restart or reload is needed. Each device gets username = client id = pid (the plugin
refuses that username under any other client id, so no one takes over a device's session)
and its own role (:func:`naboom.devices.dynsec.device_role`).

Errors: :class:`BrokerError` (an :class:`~naboom.errors.UnavailableError`, HTTP 503) when the
broker cannot be reached, does not answer in time, or refuses a command.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiomqtt

from naboom.devices.dynsec import device_role
from naboom.errors import UnavailableError
from naboom.settings import MqttTarget, Settings

__all__ = ["BrokerAccount", "BrokerAdmin", "BrokerError", "set_device_login"]

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
PASSWORD_BYTES = 32
# The plugin's own wording; only these answers mean "already as wanted".
CLIENT_EXISTS = "Client already exists"
ROLE_EXISTS = "Role already exists"
CLIENT_NOT_FOUND = "Client not found"


class BrokerError(UnavailableError):
    """The broker could not be reached, did not answer, or refused an account command."""

    title = "Broker unavailable"


@dataclass(frozen=True, slots=True)
class BrokerAccount:
    """A device's MQTT login; the password is shown once, like the signing secret."""

    username: str
    password: str = field(repr=False)


class BrokerAdmin:
    """One admin connection to the broker; ``async with BrokerAdmin(target) as admin: ...``."""

    def __init__(self, target: MqttTarget, *, timeout: float = 10.0) -> None:
        self._target = target
        self._timeout = timeout
        self._client: aiomqtt.Client | None = None

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 10.0) -> BrokerAdmin:
        """From ``NABOOM_MQTT_ADMIN_URL`` (``mqtt://admin:pass@host:port``)."""
        return cls(MqttTarget.from_url(url), timeout=timeout)

    async def __aenter__(self) -> BrokerAdmin:
        client = self._target.client(f"naboom-admin-{uuid.uuid4().hex[:12]}", clean_session=True,
                                     timeout=self._timeout)
        where = f"{self._target.host}:{self._target.port}"
        try:
            async with asyncio.timeout(self._timeout):
                await client.__aenter__()
                granted = await client.subscribe(RESPONSE_TOPIC, qos=1)
        except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
            raise BrokerError(f"cannot manage broker accounts on {where}: {_describe(exc)}") from exc
        self._client = client
        if any(int(getattr(code, "value", code)) >= 0x80 for code in granted):
            await self.__aexit__(None, None, None)
            raise BrokerError(f"cannot manage broker accounts on {where}: the user may not read {RESPONSE_TOPIC} "
                              "(NABOOM_MQTT_ADMIN_URL must name the broker's admin user)")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.__aexit__(exc_type, exc, tb)
            except aiomqtt.MqttError:
                log.debug("broker admin connection closed uncleanly", exc_info=True)

    async def command(self, *commands: dict[str, Any]) -> list[dict[str, Any]]:
        """Send commands in one message; their responses in the same order (``error`` set when refused)."""
        if self._client is None:
            raise RuntimeError("use BrokerAdmin inside 'async with'")
        ids = [uuid.uuid4().hex for _ in commands]
        body = {"commands": [{**c, "correlationData": i} for c, i in zip(commands, ids, strict=True)]}
        answers: dict[str, dict[str, Any]] = {}
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.publish(CONTROL_TOPIC, json.dumps(body), qos=1)
                async for message in self._client.messages:
                    for response in _responses(message.payload):
                        if response.get("correlationData") in ids:
                            answers[response["correlationData"]] = response
                    if len(answers) == len(ids):
                        break
        except (aiomqtt.MqttError, TimeoutError) as exc:
            names = ", ".join(c["command"] for c in commands)
            raise BrokerError(f"the broker did not answer {names}: {_describe(exc)}") from exc
        return [answers[i] for i in ids]

    async def checked(self, *commands: dict[str, Any], accept: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
        """Like :meth:`command`, raising :class:`BrokerError` on any error not in ``accept``."""
        responses = await self.command(*commands)
        for response in responses:
            error = response.get("error")
            if error and error not in accept:
                raise BrokerError(f"the broker refused {response.get('command')}: {error}")
        return responses

    async def provision_device(self, pid: str, *, enabled: bool = True) -> BrokerAccount:
        """Create the device's account and role, or give an existing account a new password.

        Idempotent: the account ends with username = client id = ``pid``, only its own role,
        a fresh random password, and enabled or disabled as asked.
        """
        role = device_role(pid)
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        account = {"username": pid, "password": password, "clientid": pid, "roles": [{"rolename": role["rolename"]}]}
        _, created = await self.checked(
            {"command": "createRole", **role},
            {"command": "createClient", **account, "textname": f"Device {pid}"},
            accept=frozenset({ROLE_EXISTS, CLIENT_EXISTS}),
        )
        if created.get("error") == CLIENT_EXISTS:
            await self.checked({"command": "modifyClient", **account})
        await self.checked({"command": "enableClient" if enabled else "disableClient", "username": pid})
        log.info("broker account for device %s provisioned (%s)", pid, "enabled" if enabled else "disabled")
        return BrokerAccount(username=pid, password=password)

    async def disable_device(self, pid: str) -> bool:
        """Refuse the device's logins (and drop its connection); False when it has no account."""
        return await self._switch(pid, "disableClient")

    async def enable_device(self, pid: str) -> bool:
        """Accept the device's logins again; False when it has no account."""
        return await self._switch(pid, "enableClient")

    async def _switch(self, pid: str, command: str) -> bool:
        (response,) = await self.checked({"command": command, "username": pid}, accept=frozenset({CLIENT_NOT_FOUND}))
        found = response.get("error") != CLIENT_NOT_FOUND
        log.info("broker account for device %s: %s%s", pid, command, "" if found else " (no account)")
        return found


async def set_device_login(settings: Settings, pid: str, enabled: bool) -> None:
    """Enable or disable a device's broker account when this deployment manages them; else nothing.

    A connection per call: account changes are rare admin actions, not worth a standing
    admin session on the broker.
    """
    if settings.mqtt_admin_url is None:
        return
    async with BrokerAdmin.from_url(settings.mqtt_admin_url) as admin:
        await (admin.enable_device(pid) if enabled else admin.disable_device(pid))


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _responses(payload: Any) -> list[dict[str, Any]]:
    try:
        data = json.loads(bytes(payload))
    except (TypeError, ValueError):
        return []
    responses = data.get("responses") if isinstance(data, dict) else None
    return [r for r in responses if isinstance(r, dict)] if isinstance(responses, list) else []
