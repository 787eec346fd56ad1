"""The transactional outbox: outbound messages written with the change that causes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from advanced_alchemy.base import BigIntBase, UUIDBase
from advanced_alchemy.types import DateTimeUTC, EncryptedString, JsonB
from sqlalchemy import Boolean, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from naboom.settings import get_settings


def _encryption_key() -> str:
    return get_settings().secret_key


class OutboxMessage(BigIntBase):
    """One message for the broker; ``id`` is the publishing order, ``published_at`` set after the PUBACK."""

    __tablename__ = "outbox_message"
    # The bridge reads "unpublished, oldest first": a partial index stays as small as the backlog.
    __table_args__ = (
        Index(
            "ix_outbox_message_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )

    topic: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonB, default=dict)
    # Messages of one key (a device, an incident) go out in the order they were written.
    key: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    published_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class Webhook(UUIDBase):
    """An admin-configured HTTP endpoint; its deliveries are outbox rows with topic ``webhook:{id}``."""

    __tablename__ = "webhook"

    url: Mapped[str] = mapped_column(String(2000))
    # Encrypted at rest with NABOOM_SECRET_KEY; the plain secret leaves the system once, at creation.
    secret: Mapped[str] = mapped_column(EncryptedString(key=_encryption_key))
    event_types: Mapped[list[str]] = mapped_column(JsonB, default=list)
    # None: every region.
    region: Mapped[str | None] = mapped_column(String(32), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
