"""``/api/vehicles`` (operators and admins) and ``/panic/api/vehicle/ping`` (vehicles)."""

from __future__ import annotations

from litestar import Controller


class VehicleController(Controller):
    """Patrol vehicles of the caller's regions."""

    path = "/api/vehicles"
    tags = ["vehicles"]


class VehiclePingController(Controller):
    """Position pings from patrol vehicles, authenticated by the vehicle's own token."""

    path = "/panic/api/vehicle"
    tags = ["vehicles"]
