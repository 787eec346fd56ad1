"""SMS alerts end to end: ``naboom serve`` and ``naboom worker`` on PostgreSQL and Redis, the fake gateway over HTTP.

Every test uses its own region and phone numbers, and the fake gateway is scripted per
recipient, so the tests share one server, one worker and one gateway without affecting each other.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from naboom.notify.tasks import alert_new_incidents, send_sms, sweep_outbox
from tests.fakes.clickatell import HOLD, Fail, FakeClickatell, Refuse
from tests.integration.api_helpers import assert_problem
from tests.integration.incident_helpers import timeline
from tests.integration.sms_helpers import CALLBACK_SECRET, Sms, outcomes, sms_stack, unique_phone, work_of
from tests.support import Process, Server, Stack, psql, wait_for, worker


@pytest.fixture(scope="module")
def gateway() -> Iterator[FakeClickatell]:
    fake = FakeClickatell().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(real_stack: Stack, gateway: FakeClickatell) -> Stack:
    return sms_stack(real_stack, gateway)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sms-logs")


@pytest.fixture(scope="module")
def api(stack: Stack, logs: Path) -> Iterator[Server]:
    srv = Server(stack, logs / "serve.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def sms_worker(stack: Stack, logs: Path, api: Server) -> Iterator[Process]:
    proc = worker(stack, logs / "worker.log", "critical")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def sms(stack: Stack, sms_worker: Process) -> Sms:
    return Sms.of(stack)


@pytest.fixture
def callback_url(stack: Stack) -> str:
    return f"{stack.base_url}/api/sms/callback"


async def test_a_new_incident_texts_each_responder_once_logged_sent_with_the_gateway_id_then_delivered(
    sms: Sms, gateway: FakeClickatell, callback_url: str, api: Server, sms_worker: Process
) -> None:
    phones = [unique_phone(), unique_phone()]
    region, device = sms.region_with_contacts(*phones)
    incident_id = sms.sos(device, msg="Intruder at the gate")

    messages = await sms.settled(incident_id, 2, "sent")
    for phone in phones:
        (got,) = gateway.accepted(phone)
        (message,) = [m for m in messages if m["recipient"] == phone]
        assert message["provider"] == "clickatell" and message["provider_message_id"] == got.api_message_id
        assert message["attempts"] == 1 and message["step"] == "new" and message["region"] == region
        assert got.content == message["body"] and got.client_message_id == message["id"]
        assert f"SOS #{incident_id.replace('-', '')[:8].upper()}" in got.content
        assert "Intruder at the gate" in got.content and "https://maps.google.com/?q=" in got.content

    first = phones[0]
    (got,) = gateway.accepted(first)
    r = gateway.post_callback(callback_url, gateway.callback_body(got.api_message_id, to=first), secret=CALLBACK_SECRET)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "delivered" and r.json()["changed"] is True
    delivered = sms.message(r.json()["message_id"])
    assert delivered["status"] == "delivered" and delivered["delivered_at"] is not None
    assert delivered["recipient"] == first
    others = [m for m in sms.messages(incident_id=incident_id) if m["recipient"] != first]
    assert [m["status"] for m in others] == ["sent"]
    # Neither the gateway's API key nor the callback secret is ever logged.
    for log in (api.log_path.read_text(), sms_worker.log()):
        assert gateway.api_key not in log and CALLBACK_SECRET not in log


async def test_gateway_5xx_twice_then_ok_gives_one_sms_and_three_attempts(sms: Sms, gateway: FakeClickatell) -> None:
    phone = unique_phone()
    gateway.script(phone, Fail(503), Fail(502))
    _, device = sms.region_with_contacts(phone)
    incident_id = sms.sos(device)

    (message,) = await sms.settled(incident_id, 1, "sent")
    detail = sms.message(message["id"])
    assert detail["attempts"] == 3 and outcomes(detail) == ["error", "error", "accepted"]
    assert "503" in detail["attempt_log"][0]["detail"] and "502" in detail["attempt_log"][1]["detail"]
    assert len(gateway.received(phone)) == 3 and len(gateway.accepted(phone)) == 1
    assert detail["provider_message_id"] == gateway.accepted(phone)[0].api_message_id


async def test_running_the_tasks_again_for_a_sent_message_sends_nothing_twice(
    sms: Sms, gateway: FakeClickatell, stack: Stack
) -> None:
    phone = unique_phone()
    _, device = sms.region_with_contacts(phone)
    incident_id = sms.sos(device)
    (message,) = await sms.settled(incident_id, 1, "sent")

    async with work_of(stack) as work:
        await send_sms(message["id"], work)
        await send_sms(message["id"], work)
        await alert_new_incidents([incident_id], work)

    assert len(gateway.received(phone)) == 1
    again = sms.message(message["id"])
    assert again["attempts"] == 1 and again["status"] == "sent" and outcomes(again) == ["accepted"]
    assert len(sms.messages(incident_id=incident_id)) == 1


async def test_a_gateway_that_does_not_answer_in_time_leaves_an_unknown_attempt_in_the_log(
    sms: Sms, gateway: FakeClickatell, sms_worker: Process
) -> None:
    phone = unique_phone()
    gateway.script(phone, HOLD)
    _, device = sms.region_with_contacts(phone)
    incident_id = sms.sos(device)

    (message,) = await sms.settled(incident_id, 1, "sent")
    detail = sms.message(message["id"])
    assert outcomes(detail) == ["unknown", "accepted"]
    assert "no answer" in detail["attempt_log"][0]["detail"] and "may have accepted" in detail["attempt_log"][0]["detail"]
    # The timed-out request was abandoned by the client: the gateway dropped it, nothing reached the phone twice.
    assert len(gateway.dropped_for(phone)) == 1 and len(gateway.accepted(phone)) == 1
    assert f"SMS {message['id']} attempt 1 via clickatell: outcome unknown" in sms_worker.log()


async def test_a_number_the_gateway_refuses_fails_at_once_on_the_timeline_without_a_retry(
    sms: Sms, gateway: FakeClickatell, stack: Stack, sms_worker: Process
) -> None:
    phone = unique_phone()
    gateway.script(phone, Refuse())
    _, device = sms.region_with_contacts(phone)
    incident_id = sms.sos(device)

    (message,) = await sms.settled(incident_id, 1, "failed")
    assert message["attempts"] == 1 and "Invalid recipient address" in message["last_error"]
    assert len(gateway.received(phone)) == 1
    events = [t for t, _ in timeline(stack, sms.admin.token or "", incident_id)]
    assert events.count("sms.failed") == 1
    # Logged for the operators on call, without the phone number in full.
    log = sms_worker.log()
    assert f"SMS {message['id']} to +278" in log and phone.removeprefix("+") not in log


async def test_callbacks_need_the_secret_name_a_known_message_and_never_undo_a_delivery(
    sms: Sms, gateway: FakeClickatell, callback_url: str
) -> None:
    phone = unique_phone()
    _, device = sms.region_with_contacts(phone)
    incident_id = sms.sos(device)
    (message,) = await sms.settled(incident_id, 1, "sent")
    api_id = message["provider_message_id"]
    delivered = gateway.callback_body(api_id)

    assert_problem(gateway.post_callback(callback_url, delivered, secret="wrong"), 401)
    assert_problem(gateway.post_callback(callback_url, delivered, secret=None), 401)
    assert_problem(gateway.post_callback(callback_url, delivered, secret="wrong", basic=True), 401)
    assert sms.message(message["id"])["status"] == "sent"
    assert_problem(gateway.post_callback(callback_url, gateway.callback_body("no-such-id"), secret=CALLBACK_SECRET), 404)
    assert_problem(gateway.post_callback(callback_url, b"{not json", secret=CALLBACK_SECRET), 400)
    assert_problem(gateway.post_callback(callback_url, {"status": "RECEIVED_BY_RECIPIENT"}, secret=CALLBACK_SECRET), 400)

    r = gateway.post_callback(callback_url, delivered, secret=CALLBACK_SECRET, basic=True)
    assert r.status_code == 200 and r.json()["status"] == "delivered", r.text
    failed = gateway.callback_body(api_id, status_code=7, status="ERROR_DELIVERING_MESSAGE", description="Error delivering message")
    queued = gateway.callback_body(api_id, status_code=2, status="QUEUED", description="Message queued")
    for later in (failed, queued, delivered):
        r = gateway.post_callback(callback_url, later, secret=CALLBACK_SECRET)
        assert r.status_code == 200 and r.json() == {"message_id": message["id"], "status": "delivered", "changed": False}
    assert sms.message(message["id"])["status"] == "delivered"


async def test_a_delivery_error_callback_fails_a_sent_message_and_puts_it_on_the_timeline(
    sms: Sms, gateway: FakeClickatell, stack: Stack, callback_url: str
) -> None:
    phone = unique_phone()
    _, device = sms.region_with_contacts(phone)
    incident_id = sms.sos(device)
    (message,) = await sms.settled(incident_id, 1, "sent")

    # Found by our own id (clientMessageId), as a callback for an attempt whose answer was lost would be.
    body = gateway.callback_body(None, status_code="009", status=None, description="Routing error", client_message_id=message["id"])
    r = gateway.post_callback(callback_url, body, secret=CALLBACK_SECRET)
    assert r.status_code == 200 and r.json()["status"] == "failed", r.text
    failed = sms.message(message["id"])
    assert failed["status"] == "failed" and "Routing error" in failed["last_error"]
    assert [t for t, _ in timeline(stack, sms.admin.token or "", incident_id)].count("sms.failed") == 1


async def test_inactive_contacts_get_nothing_and_an_incident_in_a_region_without_contacts_is_still_marked_alerted(
    sms: Sms, gateway: FakeClickatell, stack: Stack
) -> None:
    active, inactive = unique_phone(), unique_phone()
    region, device = sms.region_with_contacts(active, inactive)
    (contact,) = [c for c in sms.admin.ok("GET", f"/api/regions/{region}/contacts")["items"] if c["phone"] == inactive]
    sms.admin.ok("PATCH", f"/api/regions/{region}/contacts/{contact['id']}", {"active": False})
    incident_id = sms.sos(device)
    messages = await sms.settled(incident_id, 1, "sent")
    assert [m["recipient"] for m in messages] == [active] and not gateway.received(inactive)

    _, lonely = sms.region_with_contacts()
    quiet = sms.sos(lonely)
    assert stack.database_url is not None

    def alerted() -> bool:
        return psql(stack.database_url or "", f"SELECT alerted_at IS NOT NULL FROM incident WHERE id = '{quiet}'") == "t"

    await wait_for(alerted, what="the incident without responders to be marked alerted")
    assert sms.messages(incident_id=quiet) == []


async def test_admins_manage_contacts_with_e164_numbers_one_per_region_and_every_change_audited(sms: Sms) -> None:
    admin = sms.admin
    region = admin.new_region()
    path = f"/api/regions/{region}/contacts"
    created = admin.ok("POST", path, {"name": "Thabo", "phone": "+27 82 123-4567"}, status=201)
    assert created["phone"] == "+27821234567" and created["active"] is True and created["region"] == region

    for bad in ("0821234567", "+27", "+2782123456789012", "+27abc4567890", "+0821234567"):
        problem = assert_problem(admin.post(path, {"name": "Bad", "phone": bad}), 400)
        assert "E.164" in problem["detail"], problem
    assert_problem(admin.post(path, {"name": "Again", "phone": "+27821234567"}), 409)
    assert_problem(admin.post(path, {"name": "No phone"}), 400)
    assert "needs a name" in assert_problem(admin.post(path, {"name": "   ", "phone": "+27820000009"}), 400)["detail"]
    other = admin.new_region()
    admin.ok("POST", f"/api/regions/{other}/contacts", {"name": "Same number, other region", "phone": "+27821234567"}, status=201)

    second = admin.ok("POST", path, {"name": "Lerato", "phone": "+27829876543"}, status=201)
    assert_problem(admin.patch(f"{path}/{second['id']}", {"phone": "+27821234567"}), 409)
    renamed = admin.ok("PATCH", f"{path}/{second['id']}", {"name": "Lerato M", "phone": "+27 82 000 0001"})
    assert renamed["name"] == "Lerato M" and renamed["phone"] == "+27820000001"
    listed = admin.ok("GET", path)
    assert listed["total"] == 2 and [c["name"] for c in listed["items"]] == ["Lerato M", "Thabo"]

    assert admin.request("DELETE", f"{path}/{created['id']}").status_code == 204
    assert_problem(admin.request("DELETE", f"{path}/{created['id']}"), 404)
    assert_problem(admin.patch(f"/api/regions/{other}/contacts/{second['id']}", {"name": "x"}), 404)
    assert_problem(admin.get("/api/regions/ZA-NOPE-NONE/contacts"), 404)

    actions = [
        (e["action"], e["target_id"])
        for e in admin.ok("GET", "/api/audit?target_type=responder_contact&limit=500")["items"]
        if e["detail"].get("region") == region
    ]
    assert actions == [
        ("contact.delete", created["id"]),
        ("contact.update", second["id"]),
        ("contact.create", second["id"]),
        ("contact.create", created["id"]),
    ]


async def test_operators_read_the_log_of_their_own_regions_only(sms: Sms, stack: Stack) -> None:
    phone = unique_phone()
    region, device = sms.region_with_contacts(phone)
    incident_id = sms.sos(device)
    (message,) = await sms.settled(incident_id, 1, "sent")
    operator = sms.admin.login_as(sms.admin.new_user("operator", region))
    outsider = sms.admin.login_as(sms.admin.new_user("operator", sms.admin.new_region()))

    mine = operator.ok("GET", "/api/sms/messages")
    assert [m["id"] for m in mine["items"]] == [message["id"]] and mine["total"] == 1
    assert operator.ok("GET", f"/api/sms/messages/{message['id']}")["attempt_log"][0]["outcome"] == "accepted"
    assert outsider.ok("GET", "/api/sms/messages")["total"] == 0
    assert outsider.ok("GET", f"/api/sms/messages?region={region}")["total"] == 0
    assert_problem(outsider.get(f"/api/sms/messages/{message['id']}"), 404)
    assert_problem(operator.get("/api/sms/providers"), 403)

    by_status = sms.messages(incident_id=incident_id, status="sent")
    assert [m["id"] for m in by_status] == [message["id"]]
    assert sms.messages(incident_id=incident_id, status="failed") == []
    assert_problem(sms.admin.get("/api/sms/messages", status="nonsense"), 400)


async def test_the_outbox_sweep_alerts_incidents_whose_kick_was_lost_and_resends_messages_left_waiting(
    sms: Sms, gateway: FakeClickatell, stack: Stack
) -> None:
    assert stack.database_url is not None
    db = stack.database_url
    # An incident committed, but its alert never ran: it has no messages and no alerted_at.
    region, device = sms.region_with_contacts()
    incident_id = sms.sos(device)
    await wait_for(
        lambda: psql(db, f"SELECT alerted_at IS NOT NULL FROM incident WHERE id = '{incident_id}'") == "t",
        what="the (empty) alert of the region without responders",
    )
    phone = unique_phone()
    sms.admin.ok("POST", f"/api/regions/{region}/contacts", {"name": "Late", "phone": phone}, status=201)
    psql(db, f"UPDATE incident SET alerted_at = NULL WHERE id = '{incident_id}'")
    # A message queued an hour ago whose send_sms kick was lost.
    waiting, waiting_phone = uuid.uuid4(), unique_phone()
    psql(
        db,
        "INSERT INTO outbound_message (id, key, incident_id, region, step, recipient, body, status, attempts, "
        f"created_at, updated_at) VALUES ('{waiting}', '{incident_id}:manual:{waiting_phone}', '{incident_id}', "
        f"'{region}', 'manual', '{waiting_phone}', 'Left waiting', 'queued', 0, now() - interval '1 hour', "
        "now() - interval '1 hour')",
    )

    async with work_of(stack) as work:
        # A minute on: the incident is past the grace the normal kick is given.
        later = work.clock() + timedelta(minutes=1)
        await sweep_outbox(dataclasses.replace(work, clock=lambda: later))

    messages = await sms.settled(incident_id, 2, "sent")
    (alert,) = [m for m in messages if m["step"] == "new"]
    assert alert["recipient"] == phone and len(gateway.accepted(phone)) == 1
    assert sms.message(str(waiting))["status"] == "sent" and len(gateway.accepted(waiting_phone)) == 1
    assert psql(db, f"SELECT alerted_at IS NOT NULL FROM incident WHERE id = '{incident_id}'") == "t"
