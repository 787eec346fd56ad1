"""What goes out: acknowledgements to devices and incident summaries for a region's displays."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from naboom.incidents.schemas import IncidentOut
from naboom.outbox.service import Outgoing, enqueue_many

if TYPE_CHECKING:
    from naboom.ingest.schemas import Outcome
    from naboom.ingest.service import Stored

ACK_TOPIC = "panic/ack"
ALERTS_TOPIC = "panic/alerts"
# Two decimals of a degree is about a kilometre: enough for a display, not an address.
COARSE_DECIMALS = 2


def ack(pid: str, incident_id: uuid.UUID, status: str, nonce: int | str | None = None) -> Outgoing:
    """``panic/ack/{pid}``: tells the device its alarm was received (``nonce`` set) or how its incident moved."""
    payload: dict[str, object] = {"incident_id": str(incident_id), "status": status}
    if nonce is not None:
        payload["nonce"] = nonce
    return f"{ACK_TOPIC}/{pid}", payload, pid


def alert(incident: IncidentOut, event: str) -> Outgoing:
    """``panic/alerts/{region}``: a summary without personal data (no message, device or exact location)."""
    lat = None if incident.lat is None else round(incident.lat, COARSE_DECIMALS)
    lng = None if incident.lng is None else round(incident.lng, COARSE_DECIMALS)
    payload: dict[str, object] = {
        "type": event,
        "id": str(incident.id),
        "status": str(incident.status),
        "region": incident.region,
        "created_at": incident.created_at.isoformat(),
        "lat": lat,
        "lng": lng,
    }
    return f"{ALERTS_TOPIC}/{incident.region}", payload, str(incident.id)


def received_acks(outcomes: Sequence[Outcome]) -> list[Outgoing]:
    """A ``received`` ack for every accepted or duplicate SOS (a duplicate names the incident again)."""
    return [
        ack(outcome.pid, outcome.incident_id, "received", outcome.nonce)
        for outcome in outcomes
        if outcome.pid is not None and outcome.incident_id is not None
    ]


def ingest_messages(outcomes: Sequence[Outcome], stored: Stored, *, acks: bool = True) -> list[Outgoing]:
    """The ``received`` acks (unless ``acks`` is False) and an alert per incident opened or added to."""
    messages = received_acks(outcomes) if acks else []
    messages += [alert(incident, "incident.created") for incident in stored.created]
    messages += [alert(incident, "incident.updated") for incident, _ in stored.updated]
    return messages


async def incident_moved(session: AsyncSession, incidents: Iterable[IncidentOut]) -> None:
    """In the transaction of a lifecycle change: the device hears the new status, the region an update."""
    messages: list[Outgoing] = []
    for incident in incidents:
        if incident.device is not None:
            messages.append(ack(incident.device, incident.id, str(incident.status)))
        messages.append(alert(incident, "incident.updated"))
    await enqueue_many(session, messages)
