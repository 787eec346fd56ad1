"""Sending one outbound message: exactly once where the outcome is known, durable when a worker dies.

Three steps, never a network call inside a transaction:

1. **Claim** (short transaction, the message row locked): a message already ``sent``,
   ``delivered``, ``failed`` or ``cancelled`` is left alone, so running the task again is
   harmless. One ``sending`` under a live lease belongs to another worker: left alone too. One
   ``sending`` whose lease ran out was abandoned mid-send (its worker died): that attempt is
   closed as ``unknown``, since the gateway may or may not have the message. Then a new attempt
   is logged, the message becomes ``sending`` with a lease of a send's duration, and the
   circuit breakers pick the provider.
2. **Send** through the provider, bounded by ``sms_timeout_seconds``.
3. **Record** (second transaction): ``accepted`` → ``sent``; a retriable or unknown outcome →
   ``retrying`` (the task raises ``RetryLater``) until ``sms_max_attempts``, then ``failed``;
   a refusal for good → ``failed``. A failure goes on the incident's timeline and the monitor is
   told (``sms.failed``).

With no provider available (every breaker open) the attempt is logged as ``skipped``, counts
as an attempt, and the message waits for the next.
"""

from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.background.broker import WorkContext
from naboom.db import models as m
from naboom.notify.breaker import BreakerPolicy, CircuitBreaker
from naboom.notify.providers import (
    PermanentSmsError,
    RetriableSmsError,
    SmsProvider,
    UnknownOutcomeError,
    configured_providers,
    mask_phone,
    provider_specs,
    without_phone,
)
from naboom.notify.schemas import BreakerOut, ProviderOut
from naboom.notify.service import FailureNotice, announce_failures, note_failure
from naboom.settings import Settings

log = logging.getLogger(__name__)

S = m.MessageStatus
FINAL_STATUSES = frozenset({S.SENT, S.DELIVERED, S.FAILED, S.CANCELLED})
# The longest a lease outlives the send's own timeout (the time to record the outcome).
LEASE_MARGIN_SECONDS = 5.0


class Outcome(enum.StrEnum):
    """What came of one attempt (``SmsAttempt.outcome``)."""

    ACCEPTED = "accepted"
    ERROR = "error"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"


class SendResult(enum.StrEnum):
    """What the task should do next."""

    DONE = "done"
    RETRY = "retry"


def lease_seconds(settings: Settings) -> float:
    """How long a ``sending`` message belongs to the worker that claimed it.

    Longer than a send may take, and shorter than the idle time after which the task queue hands
    a dead worker's task to another worker: that worker must find the lease expired, or it
    would leave the message alone.
    """
    spare = max(0.0, settings.task_idle_timeout_seconds - settings.sms_timeout_seconds)
    return settings.sms_timeout_seconds + min(LEASE_MARGIN_SECONDS, max(0.5, spare / 2))


def breaker_policy(settings: Settings) -> BreakerPolicy:
    """The breakers' thresholds from the settings."""
    return BreakerPolicy(
        threshold=settings.breaker_failure_threshold,
        cooldown=settings.breaker_cooldown_seconds,
        trial_seconds=lease_seconds(settings),
    )


def breakers(work: WorkContext, names: list[str]) -> dict[str, CircuitBreaker]:
    """The breaker of each named provider, on the shared store."""
    policy = breaker_policy(work.settings)
    return {name: CircuitBreaker(name, work.store, work.redis, policy) for name in names}


@dataclass(frozen=True, slots=True)
class Claim:
    """A message this worker now sends: attempt ``number`` through ``provider`` (``None``: skipped)."""

    message_id: uuid.UUID
    number: int
    recipient: str
    body: str
    provider: SmsProvider | None


async def send_message(work: WorkContext, message_id: uuid.UUID) -> SendResult:
    """Claim, send and record one message (the three steps above)."""
    providers = configured_providers(work.settings, work.http)
    board = breakers(work, [p.name for p in providers])
    async with work.db.get_session() as session:
        claim = await claim_message(session, message_id, work.clock(), work.settings, providers, board)
        await session.commit()
    if claim is None:
        return SendResult.DONE
    if claim.provider is None:
        detail = "no SMS provider available: every provider's circuit breaker is open"
        return await _record(work, claim, Outcome.SKIPPED, None, detail, retriable=True)
    provider = claim.provider
    try:
        provider_id = await provider.send(claim.recipient, claim.body, str(claim.message_id))
    except UnknownOutcomeError as exc:
        await board[provider.name].record_failure(work.clock().timestamp(), exc.detail)
        log.warning(
            "SMS %s attempt %d via %s: outcome unknown (%s); it will be retried and may arrive twice",
            claim.message_id, claim.number, provider.name, exc.detail,
        )
        return await _record(work, claim, Outcome.UNKNOWN, None, exc.detail, retriable=True)
    except RetriableSmsError as exc:
        await board[provider.name].record_failure(work.clock().timestamp(), exc.detail)
        log.info(
            "SMS %s attempt %d via %s failed: %s",
            claim.message_id, claim.number, provider.name, without_phone(exc.detail, claim.recipient),
        )
        return await _record(work, claim, Outcome.ERROR, None, exc.detail, retriable=True)
    except PermanentSmsError as exc:
        # The gateway answered sensibly; only the message is at fault.
        await board[provider.name].record_success()
        return await _record(work, claim, Outcome.ERROR, None, exc.detail, retriable=False)
    await board[provider.name].record_success()
    return await _record(work, claim, Outcome.ACCEPTED, provider_id, f"accepted as {provider_id}", retriable=False)


async def claim_message(
    session: AsyncSession,
    message_id: uuid.UUID,
    now: datetime,
    settings: Settings,
    providers: list[SmsProvider],
    board: dict[str, CircuitBreaker],
) -> Claim | None:
    """Step 1: take the message for one attempt, or ``None`` when there is nothing to do."""
    message = await session.scalar(
        select(m.OutboundMessage)
        .where(m.OutboundMessage.id == message_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if message is None:
        log.info("SMS %s: no such message (removed?); nothing to send", message_id)
        return None
    if message.status in FINAL_STATUSES:
        log.debug("SMS %s is already %s; nothing to do", message_id, message.status)
        return None
    if message.status == S.SENDING:
        if message.lease_until is not None and message.lease_until > now:
            log.info("SMS %s is being sent by another worker (lease until %s)", message_id, message.lease_until)
            return None
        await _close_abandoned(session, message, now)
    provider = await _choose(providers, board, now)
    message.attempts += 1
    message.updated_at = now
    attempt = m.SmsAttempt(
        message_id=message.id, number=message.attempts, provider=provider.name if provider else None, started_at=now
    )
    session.add(attempt)
    if provider is not None:
        message.status = S.SENDING
        message.lease_until = now + timedelta(seconds=lease_seconds(settings))
    await session.flush()
    return Claim(message.id, message.attempts, message.recipient, message.body, provider)


async def _close_abandoned(session: AsyncSession, message: m.OutboundMessage, now: datetime) -> None:
    """The attempt of a worker that stopped mid-send: its outcome is unknown, and the log says so."""
    open_attempts = await session.scalars(
        select(m.SmsAttempt).where(m.SmsAttempt.message_id == message.id, m.SmsAttempt.outcome.is_(None))
    )
    for attempt in open_attempts:
        attempt.outcome = Outcome.UNKNOWN
        attempt.finished_at = now
        attempt.detail = (
            f"the worker sending attempt {attempt.number} stopped before recording its outcome "
            f"(lease expired {message.lease_until.isoformat() if message.lease_until else 'unset'}); "
            "the gateway may or may not have the message"
        )
        log.warning(
            "SMS %s attempt %d via %s was abandoned mid-send (lease expired): outcome unknown, sending again",
            message.id, attempt.number, attempt.provider,
        )
    message.last_error = "the previous attempt's worker stopped mid-send; outcome unknown"


async def _choose(providers: list[SmsProvider], board: dict[str, CircuitBreaker], now: datetime) -> SmsProvider | None:
    """The first provider whose breaker lets a call through (the primary, else the fallback)."""
    for provider in providers:
        if await board[provider.name].allow(now.timestamp()):
            return provider
    return None


async def _record(
    work: WorkContext, claim: Claim, outcome: Outcome, provider_id: str | None, detail: str, *, retriable: bool
) -> SendResult:
    """Step 3: the attempt's outcome and the message's new status, then the monitor's alert on failure."""
    notices: list[FailureNotice] = []
    async with work.db.get_session() as session:
        result = await record_outcome(
            session, claim, outcome, provider_id, detail, retriable=retriable, now=work.clock(),
            max_attempts=work.settings.sms_max_attempts, notices=notices,
        )
        await session.commit()
    await announce_failures(work.feed, notices)
    return result


async def record_outcome(
    session: AsyncSession,
    claim: Claim,
    outcome: Outcome,
    provider_id: str | None,
    detail: str,
    *,
    retriable: bool,
    now: datetime,
    max_attempts: int,
    notices: list[FailureNotice],
) -> SendResult:
    """Log what came of the attempt and move the message on; failures are appended to ``notices``."""
    message = await session.scalar(
        select(m.OutboundMessage)
        .where(m.OutboundMessage.id == claim.message_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    attempt = await session.scalar(
        select(m.SmsAttempt).where(m.SmsAttempt.message_id == claim.message_id, m.SmsAttempt.number == claim.number)
    )
    if attempt is not None:
        late = attempt.outcome is not None
        attempt.outcome = outcome
        attempt.finished_at = now
        attempt.detail = f"{detail} (recorded after another worker took the message over)" if late else detail
    if message is None:
        return SendResult.DONE
    provider_name = claim.provider.name if claim.provider else None
    if message.status == S.DELIVERED and outcome == Outcome.ACCEPTED:
        # The delivery report overtook the gateway's answer: keep "delivered", fill in who sent it.
        message.provider = message.provider or provider_name
        message.provider_message_id = message.provider_message_id or provider_id
        message.sent_at = message.sent_at or now
        return SendResult.DONE
    if message.status in FINAL_STATUSES and not (outcome == Outcome.ACCEPTED and message.status == S.FAILED):
        # Settled meanwhile (a delivery callback, or a worker that took over): never move it back.
        return SendResult.DONE
    if message.attempts != claim.number and outcome != Outcome.ACCEPTED:
        # Another worker took the message over after our lease ran out; its attempt decides.
        return SendResult.DONE
    message.updated_at = now
    message.lease_until = None
    if outcome == Outcome.ACCEPTED:
        message.status = S.SENT
        message.provider = provider_name
        message.provider_message_id = provider_id
        message.sent_at = now
        message.last_error = None
        log.info("SMS %s to %s sent via %s as %s", message.id, mask_phone(message.recipient), provider_name, provider_id)
        return SendResult.DONE
    message.last_error = detail
    if provider_name is not None:
        message.provider = provider_name
    if retriable and message.attempts < max_attempts:
        message.status = S.RETRYING
        return SendResult.RETRY
    message.status = S.FAILED
    notices.append(note_failure(session, message, now))
    return SendResult.DONE


async def provider_status(work: WorkContext) -> list[ProviderOut]:
    """Each configured provider with its breaker, as every process sees it."""
    now = work.clock().timestamp()
    specs = provider_specs(work.settings)
    board = breakers(work, [spec.name for spec in specs])
    out = []
    for spec in specs:
        breaker = await board[spec.name].read()
        out.append(
            ProviderOut(
                name=spec.name,
                kind=spec.kind,
                role=spec.role,
                url=spec.url,
                problem=spec.problem,
                breaker=BreakerOut(
                    state=breaker.shown(now),
                    failures=breaker.failures,
                    open_until=datetime.fromtimestamp(breaker.open_until, UTC) if breaker.open_until else None,
                    last_error=breaker.last_error,
                ),
            )
        )
    return out
