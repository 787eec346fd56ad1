"""``/api/regions/{code}/contacts`` (admins), ``/api/sms/...``: the outbound log, providers, delivery callbacks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from litestar import Controller, Request, delete, get, patch, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.background.broker import Work
from naboom.db import models as m
from naboom.notify.callbacks import SECRET_HEADER, apply_callback, check_secret
from naboom.notify.schemas import (
    CallbackResult,
    ClickatellCallback,
    ContactCreate,
    ContactOut,
    ContactUpdate,
    MessageDetail,
    MessageOut,
    ProviderOut,
)
from naboom.notify.sender import provider_status
from naboom.notify.service import ContactService, announce_failures, message_detail, message_page
from naboom.openapi import problems
from naboom.realtime.feed import LiveFeed
from naboom.schemas import Limit, Offset, Page
from naboom.settings import Settings
from naboom.users.auth import AuthRequest
from naboom.users.guards import admin_only


async def callback_secret(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """The gateway authenticates with the shared secret (checked before the body is read)."""
    settings: Settings = connection.app.state.settings
    check_secret(
        settings.sms_callback_secret, connection.headers.get(SECRET_HEADER), connection.headers.get("authorization")
    )


class ContactController(Controller):
    """Responder contacts: who gets an SMS the moment an incident opens in the region."""

    path = "/api/regions/{code:str}/contacts"
    tags = ["sms"]
    guards = [admin_only]

    @get("/")
    async def list_contacts(
        self, db_session: NamedDependency[AsyncSession], code: FromPath[str], limit: Limit = 100, offset: Offset = 0
    ) -> Page[ContactOut]:
        """The region's contacts by name."""
        return await ContactService(session=db_session).page(code, limit=limit, offset=offset)

    @post(
        "/",
        responses=problems(
            400, 409, why={400: "The phone number is not E.164 (`+` and 8 to 15 digits)", 409: "That number is already a contact of the region"}
        ),
    )
    async def create_contact(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        code: FromPath[str],
        data: JSONBody[ContactCreate],
    ) -> ContactOut:
        """A new contact (the number is stored in E.164 form)."""
        return await ContactService(session=db_session).create_contact(request.user, code, data)

    @patch(
        "/{contact_id:uuid}",
        responses=problems(
            400, 409, why={400: "The phone number is not E.164 (`+` and 8 to 15 digits)", 409: "That number is already a contact of the region"}
        ),
    )
    async def update_contact(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        code: FromPath[str],
        contact_id: FromPath[uuid.UUID],
        data: JSONBody[ContactUpdate],
    ) -> ContactOut:
        """Rename, renumber or (de)activate a contact."""
        return await ContactService(session=db_session).update_contact(request.user, code, contact_id, data)

    @delete("/{contact_id:uuid}", status_code=204)
    async def delete_contact(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        code: FromPath[str],
        contact_id: FromPath[uuid.UUID],
    ) -> None:
        """Remove a contact (the log keeps what was sent to them)."""
        await ContactService(session=db_session).delete_contact(request.user, code, contact_id)


class SmsController(Controller):
    """The outbound SMS log (each caller's regions), providers (admins), delivery callbacks (the gateway)."""

    path = "/api/sms"
    tags = ["sms"]

    @get("/messages")
    async def list_messages(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        incident_id: Annotated[uuid.UUID | None, QueryParameter(description="Only this incident's messages")] = None,
        region: Annotated[str | None, QueryParameter(max_length=32, pattern=r"^[A-Za-z0-9_-]+$")] = None,
        status: Annotated[list[m.MessageStatus] | None, QueryParameter(description="Only these statuses")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[MessageOut]:
        """Newest first; operators and viewers see the messages of their regions."""
        return await message_page(
            db_session, request.user, incident_id=incident_id, region=region, status=status or (), limit=limit,
            offset=offset,
        )

    @get("/messages/{message_id:uuid}")
    async def get_message(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], message_id: FromPath[uuid.UUID]
    ) -> MessageDetail:
        """One message with every attempt to send it."""
        return await message_detail(db_session, request.user, message_id)

    @get("/providers", guards=[admin_only])
    async def providers(self, request: Request) -> list[ProviderOut]:
        """Each configured provider, primary first, with its circuit breaker (shared by every process)."""
        work: Work = request.app.state.work
        return await provider_status(work.context)

    @post(
        "/callback",
        status_code=200,
        guards=[callback_secret],
        responses=problems(
            400, 401, 404, 503,
            why={
                400: "The body is not a Clickatell status callback (it needs messageId or clientMessageId, and a status)",
                401: "Missing or wrong callback secret (`X-Callback-Secret`, or the HTTP Basic password)",
                404: "No outbound message has that id",
                503: "No callback secret is configured on this server",
            },
        ),
    )
    async def callback(
        self, request: Request, db_session: NamedDependency[AsyncSession], data: JSONBody[ClickatellCallback]
    ) -> CallbackResult:
        """Clickatell's delivery status for one message: delivered, or failed; never moves a message back."""
        work: Work = request.app.state.work
        now: datetime = work.context.clock()
        result, notice = await apply_callback(db_session, data, now)
        await db_session.commit()
        if notice is not None:
            feed: LiveFeed = request.app.state.feed
            await announce_failures(feed, [notice])
        return result
