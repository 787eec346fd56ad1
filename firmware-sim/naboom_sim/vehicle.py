"""A patrol vehicle: drives a route and pings ``/panic/api/vehicle/ping`` with its Bearer token."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from naboom_sim.route import Odometer, Route

log = logging.getLogger("naboom_sim.vehicle")
PING_PATH = "/panic/api/vehicle/ping"


@dataclass
class VehicleReport:
    """What one drive sent and how the server answered."""

    sent: int = 0
    accepted: int = 0
    rate_limited: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "accepted": self.accepted,
            "rate_limited": self.rate_limited,
            "errors": self.errors,
        }


def iso_utc(moment: float) -> str:
    """ISO 8601 in UTC with a ``Z``, millisecond precision."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def retry_after(response: httpx.Response, default: float = 1.0) -> float:
    """Seconds the server asks us to wait (``Retry-After`` in seconds; a date or garbage means ``default``)."""
    try:
        return max(0.0, float(response.headers.get("retry-after", default)))
    except ValueError:
        return default


@dataclass(frozen=True)
class Drive:
    """How to drive: speed along the route, seconds between pings, and when to stop (neither: never)."""

    speed_kmh: float = 40.0
    interval: float = 5.0
    duration: float | None = None
    count: int | None = None


async def drive(
    client: httpx.AsyncClient, token: str, route: Route, plan: Drive, report: VehicleReport | None = None
) -> VehicleReport:
    """Ping the vehicle's position every ``plan.interval`` seconds until the duration or count is reached."""
    report = report or VehicleReport()
    odometer = Odometer(route)
    speed = plan.speed_kmh / 3.6
    headers = {"Authorization": f"Bearer {token}"}
    start = time.monotonic()
    next_at = start
    while True:
        elapsed = time.monotonic() - start
        if plan.count is not None and report.sent >= plan.count:
            break
        if plan.duration is not None and elapsed >= plan.duration:
            break
        here, heading = odometer.fix(speed * elapsed)
        body: dict[str, object] = {
            "lat": round(here.lat, 7),
            "lng": round(here.lng, 7),
            "ts": iso_utc(time.time()),
        }
        body["speed"] = round(speed, 2)
        if heading is not None:
            body["heading"] = round(heading, 1)
        wait = plan.interval
        try:
            response = await client.post(PING_PATH, json=body, headers=headers)
        except httpx.HTTPError as exc:
            report.sent += 1
            report.errors += 1
            log.warning("ping failed: %s", exc)
        else:
            report.sent += 1
            report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
            if response.status_code == 202:
                report.accepted += 1
            elif response.status_code == 429:
                report.rate_limited += 1
                wait = max(wait, retry_after(response))
                log.warning("rate limited; waiting %.1f s as Retry-After asks", wait)
            else:
                report.errors += 1
                log.warning("ping refused (%s): %s", response.status_code, response.text[:200])
        next_at += plan.interval
        if wait > plan.interval:
            next_at = max(next_at, time.monotonic() + wait)
        if plan.count is not None and report.sent >= plan.count:
            break
        if plan.duration is not None and next_at - start >= plan.duration:
            break
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return report
