"""Notify tasks: SMS alerts for new incidents, sending one message, the outbox sweep."""

from __future__ import annotations

from naboom.background.broker import WorkDep, every, task


@task("critical")
async def alert_new_incidents(incident_ids: list[str], work: WorkDep) -> None:
    """Queue and send the responders' SMS of each new incident (idempotent per incident and recipient)."""
    raise NotImplementedError


@task("critical", retry=True)
async def send_sms(message_id: str, work: WorkDep) -> None:
    """Send one outbound message, at most once when the outcome of an earlier attempt is known."""
    raise NotImplementedError


@task("critical", schedule=every(lambda s: s.outbox_sweep_seconds))
async def sweep_outbox(work: WorkDep) -> None:
    """Queue alerts that were never queued and re-kick messages left waiting."""
    raise NotImplementedError
