"""What the ingest remembers: accepted message receipts and rejections."""

from __future__ import annotations

import uuid
from datetime import datetime

from advanced_alchemy.base import BigIntBase, DefaultBase
from advanced_alchemy.types import GUID, DateTimeUTC
from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column


class SosReceipt(DefaultBase):
    """The de-duplication record: ``{pid}:{nonce}`` is accepted at most once (primary key)."""

    __tablename__ = "sos_receipt"

    key: Mapped[str] = mapped_column(String(140), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[uuid.UUID] = mapped_column(GUID)
    received_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)


class IngestRejection(BigIntBase):
    """A bounded log of refused messages; never holds secrets or signatures."""

    __tablename__ = "ingest_rejection"

    received_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)
    transport: Mapped[str] = mapped_column(String(16))
    topic: Mapped[str | None] = mapped_column(String(200), default=None)
    pid: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    reason: Mapped[str] = mapped_column(String(32), index=True)
    detail: Mapped[str] = mapped_column(String(500))
    size: Mapped[int] = mapped_column(Integer)
    excerpt: Mapped[str | None] = mapped_column(String(1000), default=None)
