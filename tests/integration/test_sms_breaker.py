"""A gateway that keeps failing: the message fails, the monitor hears of it, the breaker opens; a fallback takes over.

Two installations on one database, each with its own Redis prefix (so its own task queues and
breakers), ``naboom serve`` and ``naboom worker``: one with only the primary gateway, one with a
second fake gateway configured as the fallback provider.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.clickatell import Fail, FakeClickatell
from tests.integration.incident_helpers import timeline
from tests.integration.live import SseClient
from tests.integration.sms_helpers import Sms, outcomes, sms_stack, unique_phone
from tests.support import Process, Server, Stack, free_port, wait_for, worker

ALWAYS_DOWN = [Fail(503)] * 20
BREAKER = {"NABOOM_SMS_BREAKER_THRESHOLD": "2", "NABOOM_SMS_BREAKER_COOLDOWN_SECONDS": "600", "NABOOM_SMS_MAX_ATTEMPTS": "4"}


@pytest.fixture(scope="module")
def primary() -> Iterator[FakeClickatell]:
    fake = FakeClickatell().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def secondary() -> Iterator[FakeClickatell]:
    fake = FakeClickatell().start()
    yield fake
    fake.stop()


def _installation(stack: Stack, logs: Path) -> Iterator[Stack]:
    """``naboom serve`` and a worker for ``stack``, apart from any other installation on the same database."""
    apart = dataclasses.replace(
        stack,
        http_port=free_port(),
        client_id=f"naboom-test-{uuid.uuid4().hex[:8]}",
        redis_prefix=f"naboom-test-{uuid.uuid4().hex[:8]}",
    )
    srv = Server(apart, logs / "serve.log")
    srv.start()
    proc: Process = worker(apart, logs / "worker.log", "critical")
    try:
        proc.start()
        yield apart
    finally:
        proc.stop()
        srv.stop()


@pytest.fixture(scope="module")
def alone(real_stack: Stack, primary: FakeClickatell, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from _installation(sms_stack(real_stack, primary, **BREAKER), tmp_path_factory.mktemp("breaker-alone"))


@pytest.fixture(scope="module")
def with_fallback(
    real_stack: Stack, primary: FakeClickatell, secondary: FakeClickatell, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    stack = sms_stack(
        real_stack,
        primary,
        **BREAKER,
        NABOOM_SMS_FALLBACK_PROVIDER="clickatell",
        NABOOM_FALLBACK_CLICKATELL_API_KEY=secondary.api_key,
        NABOOM_FALLBACK_CLICKATELL_URL=secondary.url,
    )
    yield from _installation(stack, tmp_path_factory.mktemp("breaker-fallback"))


async def test_a_gateway_that_always_fails_fails_the_message_opens_the_breaker_and_alerts_the_monitor(
    alone: Stack, primary: FakeClickatell
) -> None:
    sms = Sms.of(alone)
    phone = unique_phone()
    primary.script(phone, *ALWAYS_DOWN)
    region, device = sms.region_with_contacts(phone)
    operator = sms.admin.login_as(sms.admin.new_user("operator", region))
    assert sms.providers()["clickatell"]["breaker"]["state"] == "closed"

    async with SseClient(alone.base_url, operator.token, region) as live:
        incident_id = sms.sos(device)
        alerts = await wait_for(lambda: live.incidents("sms.failed"), timeout=30, what="sms.failed on the live feed")

    (message,) = sms.messages(incident_id=incident_id)
    assert message["status"] == "failed" and message["attempts"] == 4
    # Two failures open the breaker; the attempts after it are not sent at all.
    detail = sms.message(message["id"])
    assert outcomes(detail) == ["error", "error", "skipped", "skipped"]
    assert "circuit breaker is open" in detail["last_error"]
    assert len(primary.received(phone)) == 2 and not primary.accepted(phone)

    (alert,) = alerts
    assert alert["incident_id"] == incident_id and alert["message_id"] == message["id"]
    assert alert["recipient"] != phone and alert["recipient"].startswith("+278") and alert["attempts"] == 4
    assert [t for t, _ in timeline(alone, operator.token or "", incident_id)].count("sms.failed") == 1

    (provider,) = sms.providers().values()
    assert provider["name"] == "clickatell" and provider["url"] == primary.url
    assert provider["breaker"]["state"] == "open" and provider["breaker"]["failures"] == 2
    assert provider["breaker"]["open_until"] is not None and "503" in provider["breaker"]["last_error"]
    assert primary.api_key not in str(sms.providers())


async def test_with_a_fallback_configured_the_second_provider_sends_while_the_primarys_breaker_is_open(
    with_fallback: Stack, primary: FakeClickatell, secondary: FakeClickatell
) -> None:
    sms = Sms.of(with_fallback)
    phone = unique_phone()
    primary.script(phone, *ALWAYS_DOWN)
    _, device = sms.region_with_contacts(phone)

    incident_id = sms.sos(device)
    (message,) = await sms.settled(incident_id, 1, "sent")

    detail = sms.message(message["id"])
    assert outcomes(detail) == ["error", "error", "accepted"]
    assert [a["provider"] for a in detail["attempt_log"]] == ["clickatell", "clickatell", "clickatell-fallback"]
    assert detail["provider"] == "clickatell-fallback"
    (got,) = secondary.accepted(phone)
    assert detail["provider_message_id"] == got.api_message_id and not primary.accepted(phone)
    providers = sms.providers()
    assert providers["clickatell"]["role"] == "primary" and providers["clickatell"]["breaker"]["state"] == "open"
    assert providers["clickatell-fallback"]["role"] == "fallback"
    assert providers["clickatell-fallback"]["breaker"]["state"] == "closed"
    assert providers["clickatell-fallback"]["url"] == secondary.url

    # While the primary's breaker stays open, the next message goes straight to the fallback.
    other = unique_phone()
    _, device = sms.region_with_contacts(other)
    (next_message,) = await sms.settled(sms.sos(device), 1, "sent")
    assert outcomes(sms.message(next_message["id"])) == ["accepted"] and not primary.received(other)
    assert len(secondary.accepted(other)) == 1
