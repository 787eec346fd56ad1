"""Mosquitto Dynamic Security data: roles, password hashes and the broker's first file.

The plugin keeps every account and role in one JSON file, which the broker rewrites itself
whenever an admin changes something over ``$CONTROL``. :func:`write_dynsec_file` makes the
first one (the admin, the app's users, their roles, deny-by-default); device accounts are
added later, live, by :mod:`naboom.devices.broker`.

Mosquitto 2.0's plugin has no ``%u``/``%c`` topic patterns (checked on 2.0.11: a role
granting ``panic/ingest/%u`` lets nobody publish), so each device gets its own role naming
its literal topics (:func:`device_role`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "ADMIN_ROLE",
    "APP_ROLE",
    "DEVICE_ROLE_PREFIX",
    "HASH_ITERATIONS",
    "device_role",
    "dynsec_config",
    "hashed_password",
    "roles",
    "write_dynsec_file",
]

ADMIN_ROLE = "naboom-broker-admin"
APP_ROLE = "naboom-app"
DEVICE_ROLE_PREFIX = "naboom-device-"
# Mosquitto's own tools write 101; the broker reads any count from the file. The admin and
# app passwords are chosen by people, so they get a real work factor.
HASH_ITERATIONS = 100_000
SALT_BYTES = 12  # what mosquitto_ctrl writes; the plugin decodes any length it fits
HASH_BYTES = 64  # SHA-512 output, the size the plugin compares


def hashed_password(password: str, *, iterations: int = HASH_ITERATIONS, salt: bytes | None = None) -> dict[str, Any]:
    """The ``password``/``salt``/``iterations`` fields the plugin checks (PBKDF2-HMAC-SHA512)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    derived = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, HASH_BYTES)
    return {
        "password": base64.b64encode(derived).decode("ascii"),
        "salt": base64.b64encode(salt).decode("ascii"),
        "iterations": iterations,
    }


def _acl(acltype: str, topic: str, allow: bool = True) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": allow}


def roles() -> list[dict[str, Any]]:
    """The admin's and the app's roles; everything not granted is denied (see :func:`dynsec_config`)."""
    control = "$CONTROL/dynamic-security/#"
    return [
        {
            "rolename": ADMIN_ROLE,
            "textdescription": "Manages accounts over $CONTROL (naboom device create/rotate)",
            "acls": [
                _acl("publishClientSend", control),
                _acl("publishClientReceive", control),
                _acl("subscribePattern", control),
            ],
        },
        {
            "rolename": APP_ROLE,
            "textdescription": "naboom serve / bridge: reads SOS and telemetry, writes acks and alerts",
            "acls": [
                # Mosquitto 2.0 checks a shared subscription's full filter, $share/<group>/ included.
                _acl("subscribePattern", "panic/ingest/#"),
                _acl("subscribePattern", "$share/+/panic/ingest/#"),
                _acl("subscribePattern", "device/+/telemetry"),
                _acl("subscribePattern", "$share/+/device/+/telemetry"),
                _acl("publishClientReceive", "panic/ingest/#"),
                _acl("publishClientReceive", "device/+/telemetry"),
                _acl("publishClientSend", "panic/ack/#"),
                _acl("publishClientSend", "panic/alerts/#"),
            ],
        },
    ]


def device_role(pid: str) -> dict[str, Any]:
    """One device's own role: its SOS and telemetry out, its acks in, nothing else.

    Pids never hold ``/``, ``+`` or ``#`` (``DeviceCreate`` allows ``[A-Za-z0-9._:-]``), so
    each topic is literal.
    """
    if any(c in pid for c in "/+#") or not pid:
        raise ValueError(f"pid {pid!r} cannot name an MQTT topic level")
    return {
        "rolename": DEVICE_ROLE_PREFIX + pid,
        "textdescription": f"Device {pid}",
        "acls": [
            _acl("publishClientSend", f"panic/ingest/{pid}"),
            _acl("publishClientSend", f"device/{pid}/telemetry"),
            _acl("subscribePattern", f"panic/ack/{pid}"),
            _acl("publishClientReceive", f"panic/ack/{pid}"),
        ],
    }


def dynsec_config(admin_user: str, admin_password: str, app_users: Mapping[str, str]) -> dict[str, Any]:
    """The whole file: one admin, the app's users (no client id binding: replicas use several ids)."""
    clients = [
        {"username": admin_user, "textname": "Naboom broker admin", **hashed_password(admin_password),
         "roles": [{"rolename": ADMIN_ROLE}]},
    ]
    clients += [
        {"username": name, "textname": "Naboom app", **hashed_password(password), "roles": [{"rolename": APP_ROLE}]}
        for name, password in app_users.items()
    ]
    return {
        "clients": clients,
        "groups": [],
        "roles": roles(),
        # Deny by default, receiving included: a client only ever gets what a role grants it.
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
    }


def write_dynsec_file(path: Path, admin_user: str, admin_password: str, app_users: Mapping[str, str]) -> None:
    """Write the first Dynamic Security file, readable by its owner only (it holds password hashes)."""
    if admin_user in app_users:
        raise ValueError("the admin and app users must have different names")
    if not admin_password or not all(app_users.values()):
        raise ValueError("every broker user needs a non-empty password")
    body = json.dumps(dynsec_config(admin_user, admin_password, app_users), indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(body)
    path.chmod(0o600)
