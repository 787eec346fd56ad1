"""The alert SMS: reference, region, message, place, local time and map link in one GSM-7 SMS."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from naboom.notify.template import SMS_LIMIT, alert_body, gsm_length, is_gsm, to_gsm

INCIDENT = uuid.UUID("3f2a9c1b-0000-4000-8000-000000000000")
RECEIVED = datetime(2025, 11, 25, 12, 5, tzinfo=UTC)


def _body(**changes: object) -> str:
    values: dict[str, object] = {
        "incident_id": INCIDENT,
        "region_name": "Limpopo",
        "timezone": "Africa/Johannesburg",
        "message": "Intruder at the back door",
        "lat": -24.53,
        "lng": 28.71,
        "accuracy": 12.5,
        "received_at": RECEIVED,
    }
    values.update(changes)
    return alert_body(**values)  # type: ignore[arg-type]


def test_the_alert_names_incident_region_message_place_local_time_and_a_map_link() -> None:
    body = _body()
    assert body == (
        "SOS #3F2A9C1B Limpopo 25 Nov 14:05 SAST: Intruder at the back door. "
        "At -24.53000,28.71000 +/-12m https://maps.google.com/?q=-24.53000,28.71000"
    )
    assert gsm_length(body) <= SMS_LIMIT and is_gsm(body)


def test_the_time_is_the_regions_local_time() -> None:
    assert "25 Nov 07:05 EST" in _body(timezone="America/New_York")
    assert "25 Nov 12:05 UTC" in _body(timezone="Nowhere/Unknown")


def test_an_incident_without_location_says_so_and_has_no_link() -> None:
    body = _body(lat=None, lng=None, accuracy=None)
    assert body.endswith("Location unknown.") and "maps.google.com" not in body


def test_a_long_message_is_cut_to_fit_one_sms_but_place_and_link_are_kept() -> None:
    body = _body(message="Help " * 60)
    assert gsm_length(body) <= SMS_LIMIT
    assert "Help Help" in body and ".." in body
    assert body.endswith("https://maps.google.com/?q=-24.53000,28.71000")


def test_a_long_region_name_gives_way_too_when_the_message_is_already_short() -> None:
    body = _body(region_name="The Greater Northern Waterberg Community Policing Forum Area", message="Fire!" * 20)
    assert gsm_length(body) <= SMS_LIMIT
    assert body.startswith("SOS #3F2A9C1B The Greater") and "maps.google.com" in body


def test_text_outside_the_gsm_alphabet_is_folded_so_the_sms_stays_gsm7() -> None:
    body = _body(message="Brand in die kombuis 🔥 — kom gou", region_name="Mpumalanga Ōst")
    assert is_gsm(body), body
    assert "Mpumalanga Ost" in body and "kombuis ? ? kom gou" in body
    assert to_gsm("café\nnaïve") == "café naive"
