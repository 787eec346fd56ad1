"""``/api/escalation-rules``: admins decide who is woken up when nobody deals with an incident."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.escalation.schemas import EscalationRuleCreate, EscalationRuleOut, EscalationRuleUpdate
from naboom.escalation.service import EscalationRuleService, rule_out
from naboom.openapi import problems
from naboom.schemas import Limit, Offset, Page
from naboom.users.auth import AuthRequest
from naboom.users.guards import admin_only

_INVALID = problems(
    422,
    why={
        422: "The rule cannot work: no levels, thresholds not strictly increasing, a target that is not E.164, "
        "a template that is empty, too long or has an unknown placeholder, or an unknown region (`detail` says which)"
    },
)


class EscalationRuleController(Controller):
    """Escalation rules, admins only; every change is audited."""

    path = "/api/escalation-rules"
    tags = ["escalation"]
    guards = [admin_only]

    @get("/")
    async def list_rules(
        self,
        db_session: NamedDependency[AsyncSession],
        region: Annotated[str | None, QueryParameter(max_length=32, pattern=r"^[A-Za-z0-9_-]+$")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[EscalationRuleOut]:
        """Rules by region, then name."""
        return await EscalationRuleService(session=db_session).page(region=region, limit=limit, offset=offset)

    @post("/", responses=_INVALID)
    async def create_rule(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], data: JSONBody[EscalationRuleCreate]
    ) -> EscalationRuleOut:
        """A new rule for an existing region; it applies from the next check on."""
        return await EscalationRuleService(session=db_session).create_rule(request.user, data)

    @get("/{rule_id:uuid}")
    async def get_rule(self, db_session: NamedDependency[AsyncSession], rule_id: FromPath[uuid.UUID]) -> EscalationRuleOut:
        """One rule."""
        return rule_out(await EscalationRuleService(session=db_session).get_rule(rule_id))

    @patch("/{rule_id:uuid}", responses=_INVALID)
    async def update_rule(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        rule_id: FromPath[uuid.UUID],
        data: JSONBody[EscalationRuleUpdate],
    ) -> EscalationRuleOut:
        """Change a rule; ``levels`` replaces all of them (a level already fired for an incident stays fired)."""
        return await EscalationRuleService(session=db_session).update_rule(request.user, rule_id, data)

    @delete("/{rule_id:uuid}")
    async def delete_rule(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], rule_id: FromPath[uuid.UUID]
    ) -> None:
        """Remove a rule; the escalations it fired stay on the incidents' timelines."""
        await EscalationRuleService(session=db_session).delete_rule(request.user, rule_id)
