"""Device telemetry over MQTT updates the device; a silent device raises ``device.silent`` once per silence."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from naboom.background.broker import WorkContext, open_work
from naboom.settings import Settings
from naboom.telemetry.service import sign
from naboom.telemetry.tasks import check_silent_devices
from tests.integration.live import SseClient
from tests.support import Server, Stack, psql, publish, publisher, wait_for

pytestmark = pytest.mark.timeout(120)


def _report(device: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"pid": device["pid"], "ts": int(time.time()), "kid": device["kid"], **fields}
    return {**body, "sig": sign(body, device["secret"])}


def _status(stack: Stack, pid: str) -> str:
    assert stack.database_url is not None
    return psql(
        stack.database_url,
        f"SELECT battery, signal_dbm, firmware, telemetry_lat, telemetry_lng, telemetry_at IS NOT NULL "
        f"FROM device WHERE pid = '{pid}'",
    )


@pytest.fixture(scope="module")
async def work(real_stack: Stack) -> AsyncIterator[WorkContext]:
    """The context tasks run with, on the stack's database and Redis, made in this process."""
    async with open_work(Settings.from_env(real_stack.env())) as work:
        yield work.context


async def test_signed_telemetry_updates_the_device_and_a_forged_one_does_not(server: Server) -> None:
    stack = server.stack
    _, device, _ = stack.new_region()
    pid = device["pid"]
    with publisher(*stack.mqtt_address) as client:
        forged = {**_report(device, battery=5), "sig": "AAAA"}
        publish(client, f"device/{pid}/telemetry", forged)
        publish(
            client,
            f"device/{pid}/telemetry",
            _report(device, battery=87, signal=-71, firmware="1.4.2", lat=-24.5, lng=28.7),
        )
    await wait_for(
        lambda: _status(stack, pid) == "87|-71|1.4.2|-24.5|28.7|t", what="the device's telemetry stored"
    )
    shown = stack.get(f"/api/devices/{pid}", stack.admin())
    assert (shown["battery"], shown["signal_dbm"], shown["firmware"]) == (87, -71, "1.4.2")
    assert shown["telemetry_at"] is not None


async def test_older_telemetry_does_not_overwrite_newer(server: Server) -> None:
    stack = server.stack
    _, device, _ = stack.new_region()
    pid = device["pid"]
    now = int(time.time())
    with publisher(*stack.mqtt_address) as client:
        publish(client, f"device/{pid}/telemetry", _report(device, ts=now, battery=60))
        await wait_for(lambda: _status(stack, pid).startswith("60|"), what="the first report stored")
        publish(client, f"device/{pid}/telemetry", _report(device, ts=now - 60, battery=99))
        publish(client, f"device/{pid}/telemetry", _report(device, ts=now + 1, battery=59))
    await wait_for(lambda: _status(stack, pid).startswith("59|"), what="the newest report stored")


async def test_a_silent_device_raises_device_silent_once_per_silence(
    server: Server, work: WorkContext
) -> None:
    stack = server.stack
    region, device, token = stack.new_region()
    pid = device["pid"]
    start = datetime.now(UTC)
    async with SseClient(stack.base_url, token, region) as live:
        # Inside its expected heartbeat (default one hour): nothing.
        await check_silent_devices(work, now=(start + timedelta(minutes=30)).isoformat())
        # Past it: raised, and not again on the next runs while the device stays silent.
        await check_silent_devices(work, now=(start + timedelta(hours=2)).isoformat())
        await check_silent_devices(work, now=(start + timedelta(hours=3)).isoformat())
        raised = await wait_for(
            lambda: [e for e in live.events if e["event"] == "device.silent"],
            what="device.silent on the live feed",
        )
        assert raised[0]["data"]["pid"] == pid
        assert raised[0]["data"]["region"] == region
        assert raised[0]["data"]["expected_heartbeat_seconds"] == 3600
        # The device speaks again, then falls silent again: a new silence, a new alert.
        with publisher(*stack.mqtt_address) as client:
            publish(
                client,
                f"device/{pid}/telemetry",
                _report(device, ts=int(time.time()) + 2, battery=12),
            )
        await wait_for(lambda: _status(stack, pid).startswith("12|"), what="telemetry stored")
        await check_silent_devices(work, now=(start + timedelta(hours=3, minutes=30)).isoformat())
        await check_silent_devices(work, now=(start + timedelta(hours=5)).isoformat())
        await wait_for(
            lambda: len([e for e in live.events if e["event"] == "device.silent"]) == 2,
            what="a second device.silent",
        )
        silent = [e for e in live.events if e["event"] == "device.silent"]
        assert [e["data"]["pid"] for e in silent] == [pid, pid]
        assert silent[1]["data"]["battery"] == 12
