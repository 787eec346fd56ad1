"""Escalation rule schemas: what admins send and read back."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from naboom.db.models import EscalationCondition
from naboom.escalation.templates import PLACEHOLDERS
from naboom.regions.schemas import RegionCode
from naboom.schemas import Schema

RuleName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, examples=["Wake the duty manager"])]


class EscalationLevel(Schema):
    """One step of a rule: when it fires, who gets the SMS and what it says."""

    threshold_minutes: Annotated[
        int, msgspec.Meta(description="Minutes after the incident was received; 1 to 10080 (a week)", examples=[5])
    ]
    targets: Annotated[
        list[str],
        msgspec.Meta(description="E.164 phone numbers (+ and 8 to 15 digits), 1 to 50", examples=[["+27821234567"]]),
    ]
    template: Annotated[
        str,
        msgspec.Meta(
            description="The SMS, at most 480 characters; placeholders: "
            + "; ".join(f"{{{name}}} {meaning}" for name, meaning in PLACEHOLDERS.items())
            + ". Write {{ and }} for literal braces",
            examples=["Incident {incident} in {region} unacknowledged for {minutes} min: {link}"],
        ),
    ]


Levels = Annotated[
    list[EscalationLevel],
    msgspec.Meta(
        description="In firing order: at least one, at most 10, thresholds strictly increasing; "
        "content is checked by the server (422 names the level and what is wrong)",
    ),
]


class EscalationRuleCreate(Schema):
    """A new rule for one region."""

    region: RegionCode
    name: RuleName
    levels: Levels
    condition: EscalationCondition = EscalationCondition.OPEN
    active: bool = True


class EscalationRuleUpdate(Schema):
    """What may change about a rule; ``levels`` replaces all levels at once."""

    region: RegionCode | None = None
    name: RuleName | None = None
    levels: Levels | None = None
    condition: EscalationCondition | None = None
    active: bool | None = None


class EscalationRuleOut(Schema):
    """A rule as admins see it."""

    id: uuid.UUID
    region: str
    name: str
    condition: EscalationCondition
    active: bool
    levels: list[EscalationLevel]
    created_at: datetime
    updated_at: datetime
