"""Escalation: the admins' rules, and firing their levels for incidents nobody has dealt with.

A rule belongs to a region and lists levels, each with a threshold in minutes. When an incident
of the region still meets the rule's condition (``open``: nobody acknowledged it;
``unresolved``: not resolved or cancelled) and has been waiting for a level's threshold, the
level fires once: an ``escalated`` event on the incident's timeline and an SMS to the level's
targets. Levels fire in order; a check that runs late fires every level that is due, in order.

Firing is claimed by inserting an ``incident_escalation`` row whose unique key is
(incident, rule, level): of two checks running at once, or one run twice, only one fires a
level. The incidents about to escalate are locked first, so an acknowledgement committed
meanwhile is seen (and stops an ``open`` rule) rather than raced.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.audit.service import record
from naboom.db import models as m
from naboom.db.inserts import insert_ignore, table_of
from naboom.errors import NaboomError, NotFoundError
from naboom.escalation.schemas import (
    EscalationLevel,
    EscalationRuleCreate,
    EscalationRuleOut,
    EscalationRuleUpdate,
)
from naboom.escalation.templates import TemplateError, check_template, render
from naboom.incidents.schemas import IncidentOut, TimelineEntry
from naboom.notify.service import E164, queue_messages
from naboom.notify.template import local_time, map_link, short_ref, to_gsm
from naboom.schemas import Page
from naboom.users.auth import Principal

S = m.IncidentStatus
# The statuses in which an incident still meets each condition.
CONDITION_STATUSES: dict[str, tuple[str, ...]] = {
    m.EscalationCondition.OPEN: (S.OPEN,),
    m.EscalationCondition.UNRESOLVED: (S.OPEN, S.ACKNOWLEDGED, S.DISPATCHED),
}
MAX_LEVELS = 10
MAX_TARGETS = 50
MAX_THRESHOLD_MINUTES = 7 * 24 * 60
# Incidents older than a rule's last threshold plus this have had their chance: the check never
# looks further back, so it stays a cheap range scan however long the incident table grows.
LOOKBACK_SLACK = timedelta(days=1)
SYSTEM_ACTOR = "system"


class InvalidRuleError(NaboomError):
    """A rule that is well-formed but cannot work (the detail names the level and the problem)."""

    status_code = 422
    title = "Unprocessable Content"


def rule_out(rule: m.EscalationRule) -> EscalationRuleOut:
    """A rule as admins see it."""
    return EscalationRuleOut(
        id=rule.id,
        region=rule.region,
        name=rule.name,
        condition=m.EscalationCondition(rule.condition),
        active=rule.active,
        levels=[msgspec.convert(level, EscalationLevel) for level in rule.levels],
        created_at=rule.created_at,
        updated_at=rule.updated_at,
    )


def check_levels(levels: Sequence[EscalationLevel]) -> None:
    """At least one level; thresholds rising from 1 minute; E.164 targets; known placeholders only."""
    if not levels:
        raise InvalidRuleError("a rule needs at least one level")
    if len(levels) > MAX_LEVELS:
        raise InvalidRuleError(f"a rule has at most {MAX_LEVELS} levels, not {len(levels)}")
    previous = 0
    for number, level in enumerate(levels, start=1):
        where = f"level {number}"
        minutes = level.threshold_minutes
        if not 1 <= minutes <= MAX_THRESHOLD_MINUTES:
            raise InvalidRuleError(
                f"{where}: threshold_minutes must be 1 to {MAX_THRESHOLD_MINUTES} (a week), not {minutes}"
            )
        if minutes <= previous:
            raise InvalidRuleError(
                f"{where}: threshold_minutes {minutes} must be greater than level {number - 1}'s {previous}; "
                "levels fire in order, so thresholds strictly increase"
            )
        previous = minutes
        if not level.targets:
            raise InvalidRuleError(f"{where}: targets is empty; list at least one phone number")
        if len(level.targets) > MAX_TARGETS:
            raise InvalidRuleError(f"{where}: at most {MAX_TARGETS} targets, not {len(level.targets)}")
        seen: set[str] = set()
        for target in level.targets:
            if not E164.fullmatch(target):
                raise InvalidRuleError(
                    f"{where}: target {target[:32]!r} is not an E.164 phone number: write + and the country code, "
                    "then the number, 8 to 15 digits in all, no spaces (such as +27821234567)"
                )
            if target in seen:
                raise InvalidRuleError(f"{where}: target {target} is listed twice")
            seen.add(target)
        try:
            check_template(level.template)
        except TemplateError as exc:
            raise InvalidRuleError(f"{where}: {exc}") from None


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or "\x00" in name:
        raise InvalidRuleError("name must have some text and no NUL character")
    return name


class EscalationRuleService(SQLAlchemyAsyncRepositoryService[m.EscalationRule]):
    """Escalation rules: admins create, read, change and delete them; every change is audited."""

    class Repo(SQLAlchemyAsyncRepository[m.EscalationRule]):
        model_type = m.EscalationRule

    repository_type = Repo

    @property
    def session(self) -> AsyncSession:
        """The session this service works in."""
        return self.repository.session

    async def page(self, *, region: str | None, limit: int, offset: int) -> Page[EscalationRuleOut]:
        """Rules by region, then name; ``region`` narrows to one region."""
        query = select(m.EscalationRule)
        if region is not None:
            query = query.where(m.EscalationRule.region == region)
        total = await self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = await self.session.scalars(
            query.order_by(m.EscalationRule.region, m.EscalationRule.name, m.EscalationRule.id).limit(limit).offset(offset)
        )
        return Page(items=[rule_out(r) for r in rows], total=total, limit=limit, offset=offset)

    async def get_rule(self, rule_id: uuid.UUID) -> m.EscalationRule:
        """One rule or 404."""
        rule = await self.session.get(m.EscalationRule, rule_id)
        if rule is None:
            raise NotFoundError(f"no escalation rule {rule_id}")
        return rule

    async def create_rule(self, principal: Principal, data: EscalationRuleCreate) -> EscalationRuleOut:
        """A new rule of an existing region."""
        name = _check_name(data.name)
        check_levels(data.levels)
        await self._require_region(data.region)
        rule = await self.repository.add(
            m.EscalationRule(
                region=data.region,
                name=name,
                condition=data.condition,
                active=data.active,
                levels=msgspec.to_builtins(data.levels),
            )
        )
        out = rule_out(rule)
        record(self.session, principal, "escalation_rule.create", "escalation_rule", rule.id, _audited(out))
        return out

    async def update_rule(
        self, principal: Principal, rule_id: uuid.UUID, data: EscalationRuleUpdate
    ) -> EscalationRuleOut:
        """Change what is given; ``levels`` replaces every level (levels already fired stay fired by number)."""
        rule = await self.get_rule(rule_id)
        before = _audited(rule_out(rule))
        if data.name is not None:
            rule.name = _check_name(data.name)
        if data.levels is not None:
            check_levels(data.levels)
            rule.levels = msgspec.to_builtins(data.levels)
        if data.region is not None and data.region != rule.region:
            await self._require_region(data.region)
            rule.region = data.region
        if data.condition is not None:
            rule.condition = data.condition
        if data.active is not None:
            rule.active = data.active
        await self.session.flush()
        await self.session.refresh(rule)
        out = rule_out(rule)
        after = _audited(out)
        changed = {key: value for key, value in after.items() if before.get(key) != value}
        record(self.session, principal, "escalation_rule.update", "escalation_rule", rule.id, changed)
        return out

    async def delete_rule(self, principal: Principal, rule_id: uuid.UUID) -> None:
        """Remove a rule; what it already fired stays on the incidents' timelines."""
        rule = await self.get_rule(rule_id)
        detail = _audited(rule_out(rule))
        await self.session.delete(rule)
        await self.session.flush()
        record(self.session, principal, "escalation_rule.delete", "escalation_rule", rule_id, detail)

    async def _require_region(self, code: str) -> None:
        if await self.session.get(m.Region, code) is None:
            raise InvalidRuleError(f"unknown region {code!r}; create it first (POST /api/regions)")


def _audited(rule: EscalationRuleOut) -> dict[str, Any]:
    """What the audit log keeps of a rule (all of it but the timestamps)."""
    data: dict[str, Any] = msgspec.to_builtins(rule)
    for key in ("id", "created_at", "updated_at"):
        data.pop(key)
    return data


# Firing ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Escalation:
    """One level fired for one incident: broadcast ``incident`` with ``change``, send ``message_ids``."""

    incident: IncidentOut
    change: TimelineEntry
    rule_id: uuid.UUID
    level: int
    message_ids: list[uuid.UUID]


@dataclass(frozen=True, slots=True)
class _Due:
    rule: m.EscalationRule
    incident_id: uuid.UUID
    levels: list[int]  # level numbers, in order


async def escalate_due(session: AsyncSession, now: datetime, *, public_url: str = "") -> list[Escalation]:
    """Fire every level that is due at ``now``, each at most once ever; the caller commits.

    Then the caller kicks ``send_sms`` for each message id and broadcasts each escalation.
    """
    rules = list(
        await session.scalars(select(m.EscalationRule).where(m.EscalationRule.active).order_by(m.EscalationRule.id))
    )
    plan: list[_Due] = []
    for rule in rules:
        plan.extend(await _due(session, rule, now))
    if not plan:
        return []
    # Lock what is about to escalate, in one statement and one order (no deadlock between two
    # checks); an acknowledgement committed since the query above is seen here.
    ids = sorted({due.incident_id for due in plan})
    incidents = {
        incident.id: incident
        for incident in await session.scalars(
            select(m.Incident)
            .where(m.Incident.id.in_(ids))
            .order_by(m.Incident.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    regions = await _regions(session, {incident.region for incident in incidents.values()})
    fired: list[tuple[m.IncidentEvent, m.Incident, uuid.UUID, int, list[uuid.UUID]]] = []
    for due in plan:
        incident = incidents.get(due.incident_id)
        if incident is None or incident.status not in CONDITION_STATUSES[due.rule.condition]:
            continue
        for number in due.levels:
            if not await _claim(session, incident.id, due.rule.id, number, now):
                break  # another check fired it, and fires the levels after it
            level = due.rule.levels[number - 1]
            body = render(level["template"], _values(incident, due.rule, number, now, regions, public_url))
            message_ids = await queue_messages(
                session,
                incident_id=incident.id,
                region=incident.region,
                step=f"escalation:{due.rule.id}:{number}",
                recipients=level["targets"],
                body=body,
                now=now,
            )
            event = m.IncidentEvent(
                incident_id=incident.id,
                type="escalated",
                actor=SYSTEM_ACTOR,
                created_at=now,
                payload={
                    "rule_id": str(due.rule.id),
                    "rule_name": due.rule.name,
                    "level": number,
                    "threshold_minutes": level["threshold_minutes"],
                    "recipients": len(set(level["targets"])),
                },
            )
            session.add(event)
            fired.append((event, incident, due.rule.id, number, message_ids))
    await session.flush()
    return [
        Escalation(
            incident=IncidentOut.from_model(incident),
            change=TimelineEntry(id=event.id, type=event.type, actor=event.actor, at=event.created_at, payload=event.payload),
            rule_id=rule_id,
            level=number,
            message_ids=message_ids,
        )
        for event, incident, rule_id, number, message_ids in fired
    ]


async def _due(session: AsyncSession, rule: m.EscalationRule, now: datetime) -> list[_Due]:
    """The incidents of ``rule``'s region with levels due and not fired yet (read without locks)."""
    thresholds = [timedelta(minutes=int(level["threshold_minutes"])) for level in rule.levels]
    if not thresholds:
        return []
    statuses = CONDITION_STATUSES.get(rule.condition)
    if statuses is None:
        return []
    # (region, received_at) is indexed: a range scan over the rule's window only.
    rows = (
        await session.execute(
            select(m.Incident.id, m.Incident.received_at).where(
                m.Incident.region == rule.region,
                m.Incident.received_at >= now - thresholds[-1] - LOOKBACK_SLACK,
                m.Incident.received_at <= now - thresholds[0],
                m.Incident.status.in_(statuses),
            )
        )
    ).all()
    if not rows:
        return []
    fired: dict[uuid.UUID, set[int]] = defaultdict(set)
    for incident_id, level in await session.execute(
        select(m.IncidentEscalation.incident_id, m.IncidentEscalation.level).where(
            m.IncidentEscalation.rule_id == rule.id,
            m.IncidentEscalation.incident_id.in_([row.id for row in rows]),
        )
    ):
        fired[incident_id].add(level)
    plan = []
    for incident_id, received_at in sorted(rows, key=lambda row: (row.received_at, row.id)):
        age = now - received_at
        # Thresholds increase, so the levels due are a prefix; fire the unfired ones in order.
        due = [n for n, threshold in enumerate(thresholds, start=1) if threshold <= age and n not in fired[incident_id]]
        if due:
            plan.append(_Due(rule, incident_id, due))
    return plan


async def _claim(session: AsyncSession, incident_id: uuid.UUID, rule_id: uuid.UUID, level: int, now: datetime) -> bool:
    """Record that ``level`` fired; False when it already had (this run or another)."""
    table = table_of(m.IncidentEscalation)
    stmt = insert_ignore(session, table).values(incident_id=incident_id, rule_id=rule_id, level=level, fired_at=now)
    return (await session.scalar(stmt.returning(table.c.id))) is not None


async def _regions(session: AsyncSession, codes: set[str]) -> dict[str, tuple[str, str]]:
    """``code → (name, timezone)`` of the regions whose incidents escalate."""
    rows = await session.execute(select(m.Region.code, m.Region.name, m.Region.timezone).where(m.Region.code.in_(codes)))
    return {code: (name, timezone) for code, name, timezone in rows}


def _values(
    incident: m.Incident,
    rule: m.EscalationRule,
    level: int,
    now: datetime,
    regions: dict[str, tuple[str, str]],
    public_url: str,
) -> dict[str, str]:
    """What the placeholders of a level's template stand for (device text folded to the SMS alphabet)."""
    name, timezone = regions.get(incident.region, (incident.region, m.DEFAULT_TIMEZONE))
    place = where = "location unknown"
    if incident.lat is not None and incident.lng is not None:
        place, where = f"{incident.lat:.5f},{incident.lng:.5f}", map_link(incident.lat, incident.lng)
    return {
        "incident": short_ref(incident.id),
        "region": to_gsm(name),
        "message": to_gsm(incident.message),
        "minutes": str(int((now - incident.received_at).total_seconds() // 60)),
        "level": str(level),
        "rule": rule.name,
        "time": local_time(incident.received_at, timezone),
        "place": place,
        "map": where,
        "link": f"{public_url}/monitor/incidents/{incident.id}",
    }
