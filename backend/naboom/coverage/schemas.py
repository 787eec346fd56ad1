"""Coverage schemas: a region's patrol pings on one day, per grid cell."""

from __future__ import annotations

from datetime import date, datetime

from naboom.schemas import Schema


class CoverageCell(Schema):
    """One grid cell: its south-west corner, the pings received in it and the vehicles that sent them."""

    lat: float
    lng: float
    pings: int
    vehicles: int


class CoverageOut(Schema):
    """A region's coverage on one UTC day: cells with at least one ping, south to north, west to east."""

    region: str
    day: date
    cell_degrees: float
    pings: int
    vehicles: int
    cells: list[CoverageCell]
    computed_at: datetime


class CoverageDay(Schema):
    """A day that has a coverage report, with its totals."""

    day: date
    pings: int
    vehicles: int
    computed_at: datetime
