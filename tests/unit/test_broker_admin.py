"""BrokerAdmin against a real production Mosquitto: idempotent provisioning and clear errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from naboom.devices.broker import BrokerAdmin, BrokerError
from tests.brokers import production_broker
from tests.support import free_port, unique_pid


def test_provisioning_twice_keeps_one_account_with_the_newest_password(tmp_path: Path) -> None:
    pid = unique_pid()
    with production_broker(tmp_path) as broker:

        async def twice() -> tuple[str, str]:
            async with BrokerAdmin.from_url(broker.admin_url) as admin:
                first = await admin.provision_device(pid)
                second = await admin.provision_device(pid)
                return first.password, second.password

        old, new = asyncio.run(twice())
        assert old != new
        probes = [broker.probe(pid, old, pid), broker.probe(pid, new, pid)]
        try:
            assert [p.accepted for p in probes] == [False, True]
        finally:
            for probe in probes:
                probe.close()


def test_switching_an_unknown_account_reports_it_missing(tmp_path: Path) -> None:
    with production_broker(tmp_path) as broker:

        async def switch() -> tuple[bool, bool]:
            async with BrokerAdmin.from_url(broker.admin_url) as admin:
                return await admin.disable_device("nobody-here"), await admin.enable_device("nobody-here")

        assert asyncio.run(switch()) == (False, False)


def test_the_app_user_cannot_manage_accounts(tmp_path: Path) -> None:
    with production_broker(tmp_path) as broker:

        async def as_app() -> None:
            async with BrokerAdmin.from_url(broker.app_url, timeout=2) as admin:
                await admin.provision_device(unique_pid())

        # Its role may not subscribe to $CONTROL: the admin connection fails at once.
        with pytest.raises(BrokerError, match="cannot manage broker accounts"):
            asyncio.run(as_app())


def test_a_broker_that_is_not_there_is_a_clear_error_without_the_password() -> None:
    async def nowhere() -> None:
        async with BrokerAdmin.from_url(f"mqtt://admin:hunter2-secret@127.0.0.1:{free_port()}", timeout=2):
            pass

    with pytest.raises(BrokerError) as caught:
        asyncio.run(nowhere())
    assert "127.0.0.1" in str(caught.value) and "hunter2" not in str(caught.value)
    assert caught.value.status_code == 503


def test_accounts_made_live_survive_a_broker_restart(tmp_path: Path) -> None:
    pid = unique_pid()
    with production_broker(tmp_path) as broker:

        async def provision() -> str:
            async with BrokerAdmin.from_url(broker.admin_url) as admin:
                return (await admin.provision_device(pid)).password

        password = asyncio.run(provision())
        broker.stop()
        broker.start()
        probe = broker.probe(pid, password, pid)
        try:
            assert probe.accepted
        finally:
            probe.close()
