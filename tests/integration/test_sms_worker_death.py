"""A worker killed with SIGKILL in the middle of a send: another worker takes the task over, one SMS arrives.

The fake gateway holds the first request open; the worker that sent it is killed, so the
request is dropped with its connection (never counted as sent). The message stays ``sending``
under a lease shorter than ``NABOOM_TASK_IDLE_TIMEOUT_SECONDS``, and its task unacknowledged in
the Redis stream. A second worker claims the idle task from the stream on its own — no
scheduler runs here, so no other traffic or sweep helps — finds the lease expired, logs the
dead worker's attempt as ``unknown`` and sends again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.clickatell import HOLD, FakeClickatell
from tests.integration.sms_helpers import Sms, outcomes, sms_stack, unique_phone
from tests.support import Server, Stack, wait_for, worker


@pytest.fixture(scope="module")
def gateway() -> Iterator[FakeClickatell]:
    fake = FakeClickatell().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(real_stack: Stack, gateway: FakeClickatell) -> Stack:
    # The send's timeout (and so the lease) is shorter than the idle time after which a dead
    # worker's task is handed to another worker.
    return sms_stack(
        real_stack,
        gateway,
        # Long enough that the worker is killed before its own timeout would end the attempt.
        NABOOM_SMS_TIMEOUT_SECONDS="3",
        NABOOM_TASK_IDLE_TIMEOUT_SECONDS="6",
    )


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sms-death-logs")


@pytest.fixture(scope="module")
def api(stack: Stack, logs: Path) -> Iterator[Server]:
    srv = Server(stack, logs / "serve.log")
    srv.start()
    yield srv
    srv.stop()


async def test_a_worker_killed_mid_send_is_taken_over_and_the_recipient_gets_exactly_one_sms(
    stack: Stack, api: Server, gateway: FakeClickatell, logs: Path
) -> None:
    sms = Sms.of(stack)
    phone = unique_phone()
    gateway.script(phone, HOLD)
    _, device = sms.region_with_contacts(phone)
    first = worker(stack, logs / "first-worker.log", "critical")
    second = worker(stack, logs / "second-worker.log", "critical")
    # Process.start waits with its own event loop: off this one.
    await asyncio.to_thread(first.start)
    try:
        incident_id = sms.sos(device)
        await wait_for(lambda: gateway.holding(phone) == 1, what="the first worker's request to be held at the gateway")
        first.kill()
        await wait_for(lambda: gateway.dropped_for(phone), what="the gateway to drop the killed worker's request")
        await asyncio.to_thread(second.start)
        (message,) = await sms.settled(incident_id, 1, "sent", timeout=60)
    finally:
        first.kill()
        second.stop()

    assert len(gateway.accepted(phone)) == 1 and len(gateway.received(phone)) == 2
    detail = sms.message(message["id"])
    assert detail["attempts"] == 2 and outcomes(detail) == ["unknown", "accepted"]
    assert "stopped before recording its outcome" in detail["attempt_log"][0]["detail"]
    assert detail["provider_message_id"] == gateway.accepted(phone)[0].api_message_id
    assert "took over task message" in second.log()
    assert f"SMS {message['id']} attempt 1 via clickatell was abandoned mid-send" in second.log()
