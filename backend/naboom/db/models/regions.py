"""Regions: the unit of responsibility for operators, devices and vehicles."""

from __future__ import annotations

from advanced_alchemy.base import DefaultBase
from advanced_alchemy.mixins import AuditColumns
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

DEFAULT_TIMEZONE = "Africa/Johannesburg"


class Region(DefaultBase, AuditColumns):
    """A region such as ``ZA-LP`` (Limpopo); its code never changes."""

    __tablename__ = "region"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64), default=DEFAULT_TIMEZONE)
