"""Retention schemas: the configured periods and what a run removed."""

from __future__ import annotations

from datetime import datetime

from naboom.schemas import Schema


class RetentionReport(Schema):
    """What one run deleted or de-identified, per kind, as of ``as_of``."""

    as_of: datetime
    incidents: int
    events: int
    messages: int
    vehicle_pings: int
    rejections: int
    receipts: int
    locations_coarsened: int
    locations_removed: int
    event_locations_coarsened: int
    event_locations_removed: int


class RetentionPeriods(Schema):
    """How long each kind is kept (days; de-duplication receipts in seconds, as the window is)."""

    incident_days: float
    event_days: float
    message_days: float
    vehicle_ping_days: float
    rejection_days: float
    receipt_seconds: int
    location_coarsen_days: float
    location_remove_days: float


class RetentionRun(Schema):
    """A recorded run: when it finished and its report."""

    at: datetime
    report: RetentionReport


class RetentionStatus(Schema):
    """The periods in force and the newest run, if there was one."""

    periods: RetentionPeriods
    last_run: RetentionRun | None
