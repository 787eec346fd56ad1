"""The text of an alert SMS: one GSM-7 message (160 characters) whenever it can be.

A message with a single character outside the GSM 03.38 alphabet goes as UCS-2, where one
part holds only 70 characters, so text that comes from devices and admins is folded to that
alphabet first (accents dropped, anything else becomes ``?``).
"""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SMS_LIMIT = 160
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Sent with an escape character: each counts as two.
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")
_ELLIPSIS = ".."
# Neither a device's message nor a region's name is cut below this many characters before the other gives way.
_MIN_PART = 12


def gsm_length(text: str) -> int:
    """Septets ``text`` takes in GSM-7 (extension characters count twice)."""
    return sum(2 if c in _GSM_EXTENDED else 1 for c in text)


def is_gsm(text: str) -> bool:
    """Whether ``text`` can go as GSM-7 at all."""
    return all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in text)


def to_gsm(text: str) -> str:
    """``text`` folded into the GSM alphabet, on one line."""
    text = " ".join(text.split())
    out = []
    for char in text:
        if char in _GSM_BASIC or char in _GSM_EXTENDED:
            out.append(char)
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
        out.append(base if base and all(c in _GSM_BASIC for c in base) else "?")
    return "".join(out)


def short_ref(incident_id: uuid.UUID) -> str:
    """The incident as an SMS names it: the first eight hex digits of its id."""
    return incident_id.hex[:8].upper()


def map_link(lat: float, lng: float) -> str:
    """A link any phone opens in a map."""
    return f"https://maps.google.com/?q={lat:.5f},{lng:.5f}"


def local_time(at: datetime, timezone: str) -> str:
    """``25 Nov 14:05 SAST`` in the region's timezone (UTC if the name is unknown)."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = at.astimezone(zone)
    return f"{local:%d %b %H:%M} {local.tzname() or ''}".strip()


def alert_body(
    *,
    incident_id: uuid.UUID,
    region_name: str,
    timezone: str,
    message: str,
    lat: float | None,
    lng: float | None,
    accuracy: float | None,
    received_at: datetime,
) -> str:
    """``SOS #REF Region 25 Nov 14:05 SAST: message. At lat,lng +/-12m https://maps…``, cut to fit one SMS.

    The device's message is shortened first, then the region's name; the reference, time, place
    and link are never cut.
    """
    head = f"SOS #{short_ref(incident_id)}"
    when = local_time(received_at, timezone)
    if lat is not None and lng is not None:
        place = f"At {lat:.5f},{lng:.5f}"
        if accuracy is not None:
            place += f" +/-{round(accuracy)}m"
        place += f" {map_link(lat, lng)}"
    else:
        place = "Location unknown."
    region = to_gsm(region_name)
    text = to_gsm(message).rstrip(".") or "SOS"

    def compose(region: str, text: str) -> str:
        return f"{head} {region} {when}: {text}. {place}"

    budget = SMS_LIMIT - gsm_length(compose("", ""))
    if gsm_length(region) + gsm_length(text) > budget:
        text = _cut(text, max(_MIN_PART, budget - gsm_length(region)))
    if gsm_length(region) + gsm_length(text) > budget:
        region = _cut(region, max(_MIN_PART, budget - gsm_length(text)))
    return compose(region, text)


def _cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` septets, marked when shortened."""
    if gsm_length(text) <= limit:
        return text
    kept = ""
    for char in text:
        if gsm_length(kept + char) > limit - len(_ELLIPSIS):
            break
        kept += char
    return kept.rstrip() + _ELLIPSIS
