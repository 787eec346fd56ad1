"""``/api/webhooks``: admins send incident events to HTTP endpoints, signed with a shared secret."""

from __future__ import annotations

import uuid

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.openapi import problems
from naboom.outbox import webhooks
from naboom.outbox.webhooks import WebhookCreate, WebhookCreated, WebhookOut, WebhookUpdate
from naboom.schemas import Limit, Offset, Page
from naboom.users.auth import AuthRequest
from naboom.users.guards import admin_only

_INVALID = problems(
    422,
    why={
        422: "The webhook cannot work: a URL that is not http(s) with a host, or an unknown region (`detail` says which)"
    },
)


class WebhookController(Controller):
    """Webhooks, admins only; every change is audited and the secret is shown once."""

    path = "/api/webhooks"
    tags = ["webhooks"]
    guards = [admin_only]

    @get("/")
    async def list_webhooks(
        self, db_session: NamedDependency[AsyncSession], limit: Limit = 50, offset: Offset = 0
    ) -> Page[WebhookOut]:
        """Webhooks, oldest first; secrets only as hints."""
        return await webhooks.page(db_session, limit=limit, offset=offset)

    @post("/", responses=_INVALID)
    async def create_webhook(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], data: JSONBody[WebhookCreate]
    ) -> WebhookCreated:
        """A new webhook; the answer carries its secret, which is never shown again."""
        return await webhooks.create_webhook(db_session, request.user, data)

    @get("/{webhook_id:uuid}")
    async def get_webhook(
        self, db_session: NamedDependency[AsyncSession], webhook_id: FromPath[uuid.UUID]
    ) -> WebhookOut:
        """One webhook."""
        return webhooks.webhook_out(await webhooks.get_webhook(db_session, webhook_id))

    @patch("/{webhook_id:uuid}", responses=_INVALID)
    async def update_webhook(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        webhook_id: FromPath[uuid.UUID],
        data: JSONBody[WebhookUpdate],
    ) -> WebhookOut:
        """Change a webhook's URL, events, region or whether it is active."""
        return await webhooks.update_webhook(db_session, request.user, webhook_id, data)

    @delete("/{webhook_id:uuid}")
    async def delete_webhook(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], webhook_id: FromPath[uuid.UUID]
    ) -> None:
        """Remove a webhook; what it had not received yet is dropped."""
        await webhooks.delete_webhook(db_session, request.user, webhook_id)
