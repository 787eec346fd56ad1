"""Patrol coverage: per region and day, how patrol pings spread over a grid."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from advanced_alchemy.base import BigIntBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Date, Float, ForeignKey, Integer, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column


class CoverageReport(BigIntBase):
    """One region's patrol coverage on one day (UTC): ping counts per grid cell."""

    __tablename__ = "coverage_report"
    __table_args__ = (UniqueConstraint("region", "day", name="uq_coverage_report_region_day"),)

    region: Mapped[str] = mapped_column(ForeignKey("region.code", ondelete="CASCADE"), index=True)
    day: Mapped[date] = mapped_column(Date)
    cell_degrees: Mapped[float] = mapped_column(Float)
    pings: Mapped[int] = mapped_column(Integer, default=0)
    vehicles: Mapped[int] = mapped_column(Integer, default=0)
    # [{"lat": south edge, "lng": west edge, "pings": n, "vehicles": n}, ...]
    cells: Mapped[list[dict[str, Any]]] = mapped_column(JsonB, default=list)
    computed_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
