"""SMS on embedded defaults: ``naboom serve`` alone (SQLite, in-process tasks, memory store) with the console provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.sms_helpers import Sms, outcomes, unique_phone
from tests.support import Server, Stack

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    stack = Stack(var_dir=tmp_path_factory.mktemp("sms-embedded-var"), database_url=None, redis_url=None, mqtt_url=None)
    assert not {"NABOOM_DATABASE_URL", "NABOOM_REDIS_URL", "NABOOM_MQTT_URL", "NABOOM_SMS_PROVIDER"} & stack.env().keys()
    stack.cli("migrate")
    srv = Server(stack, tmp_path_factory.mktemp("sms-embedded-logs") / "serve.log")
    srv.start()
    yield srv
    srv.stop()


async def test_embedded_mode_sends_a_new_incidents_alert_through_the_console_provider(embedded: Server) -> None:
    sms = Sms.of(embedded.stack)
    phone = unique_phone()
    _, device = sms.region_with_contacts(phone)
    incident_id = sms.sos(device, msg="Embedded SOS")

    (message,) = await sms.settled(incident_id, 1, "sent")
    assert message["provider"] == "console" and message["provider_message_id"].startswith("console-")
    assert outcomes(sms.message(message["id"])) == ["accepted"]
    assert "Embedded SOS" in message["body"]
    (provider,) = sms.providers().values()
    assert provider["name"] == "console" and provider["breaker"]["state"] == "closed"
    log = embedded.log_path.read_text()
    assert "console SMS to +278" in log and phone.removeprefix("+") not in log
