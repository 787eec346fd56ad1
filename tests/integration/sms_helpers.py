"""Helpers for the SMS tests: the settings that point at the fake gateway, regions with responders, the log."""

from __future__ import annotations

import dataclasses
import itertools
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from naboom.background.broker import WorkContext, open_work
from naboom.settings import Settings
from tests.fakes.clickatell import FakeClickatell
from tests.integration.api_helpers import Api
from tests.support import Stack, sos, unique_pid, wait_for

CALLBACK_SECRET = f"callback-{uuid.uuid4().hex}"


def sms_stack(stack: Stack, gateway: FakeClickatell, **overrides: str) -> Stack:
    """``stack`` sending through ``gateway``, with small timeouts so retries and take-overs are quick."""
    env = {
        "NABOOM_SMS_PROVIDER": "clickatell",
        "NABOOM_CLICKATELL_API_KEY": gateway.api_key,
        "NABOOM_CLICKATELL_URL": gateway.url,
        "NABOOM_SMS_CALLBACK_SECRET": CALLBACK_SECRET,
        "NABOOM_SMS_RETRY_BASE_SECONDS": "0.2",
        "NABOOM_SMS_RETRY_MAX_SECONDS": "1",
        "NABOOM_SMS_TIMEOUT_SECONDS": "1.5",
        "NABOOM_TASK_IDLE_TIMEOUT_SECONDS": "4",
        "NABOOM_SMS_MAX_ATTEMPTS": "4",
        # Tests that do not prove the breaker must not open it for the others.
        "NABOOM_SMS_BREAKER_THRESHOLD": "1000",
        **overrides,
    }
    return dataclasses.replace(stack, extra={**stack.extra, **env})


_phones = itertools.count(random.randrange(10**7))


def unique_phone() -> str:
    """A South African mobile number no other test of this run uses (E.164)."""
    return f"+2782{next(_phones) % 10**7:07d}"


@dataclasses.dataclass
class Sms:
    """An admin's view of one installation's SMS side."""

    stack: Stack
    admin: Api

    @classmethod
    def of(cls, stack: Stack) -> Sms:
        return cls(stack, Api(stack, stack.admin()))

    def region_with_contacts(self, *phones: str) -> tuple[str, dict[str, Any]]:
        """A new region, its responders (``phones``) and a device: ``(region, device)``."""
        region = self.admin.new_region()
        for n, phone in enumerate(phones):
            self.admin.ok("POST", f"/api/regions/{region}/contacts", {"name": f"Responder {n}", "phone": phone}, status=201)
        device = self.admin.ok("POST", "/api/devices", {"pid": unique_pid(), "region": region}, status=201)
        return region, dict(device)

    def sos(self, device: dict[str, Any], **fields: Any) -> str:
        """An SOS over HTTPS; returns the incident id."""
        r = self.stack.submit(sos(device, **fields))
        assert r.status_code == 201, r.text
        return str(r.json()["incident_id"])

    def messages(self, **filters: Any) -> list[dict[str, Any]]:
        """``GET /api/sms/messages`` (one page of 500)."""
        return list(self.admin.ok("GET", "/api/sms/messages?" + _query(limit=500, **filters))["items"])

    def message(self, message_id: str) -> dict[str, Any]:
        """``GET /api/sms/messages/{id}``: the message with its attempts."""
        return dict(self.admin.ok("GET", f"/api/sms/messages/{message_id}"))

    async def settled(self, incident_id: str, count: int, *statuses: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Wait until the incident has ``count`` messages, all in one of ``statuses``."""

        def done() -> list[dict[str, Any]] | None:
            found = self.messages(incident_id=incident_id)
            return found if len(found) == count and all(m["status"] in statuses for m in found) else None

        return await wait_for(done, timeout=timeout, what=f"{count} message(s) of {incident_id} to be {'/'.join(statuses)}")

    def providers(self) -> dict[str, dict[str, Any]]:
        """``GET /api/sms/providers`` by name."""
        return {p["name"]: p for p in self.admin.ok("GET", "/api/sms/providers")}


def _query(**params: Any) -> str:
    return "&".join(f"{k}={v}" for k, v in params.items() if v is not None)


def outcomes(message: dict[str, Any]) -> list[str | None]:
    """The outcome of each attempt, in order."""
    return [a["outcome"] for a in message["attempt_log"]]


@asynccontextmanager
async def work_of(stack: Stack) -> AsyncIterator[WorkContext]:
    """A task context in this process for ``stack`` (to run a task directly, as a worker would)."""
    async with open_work(Settings.from_env(stack.env())) as work:
        yield work.context
