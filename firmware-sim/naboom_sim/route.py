"""Where a patrol vehicle is: a looping route, positions by distance driven, headings between fixes.

Plain geometry on a sphere (haversine distances, initial bearings) — metres of error over a
farm-sized route, which is all a simulator needs.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EARTH_RADIUS_M = 6_371_008.8


class RouteError(ValueError):
    """The route file is not a usable GeoJSON LineString."""


@dataclass(frozen=True)
class Point:
    lat: float
    lng: float


def distance_m(a: Point, b: Point) -> float:
    """Great-circle distance in metres."""
    phi1, phi2 = math.radians(a.lat), math.radians(b.lat)
    dphi, dlmb = phi2 - phi1, math.radians(b.lng - a.lng)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def bearing_deg(a: Point, b: Point) -> float:
    """Initial bearing from ``a`` to ``b``, degrees clockwise from true north in [0, 360)."""
    phi1, phi2 = math.radians(a.lat), math.radians(b.lat)
    dlmb = math.radians(b.lng - a.lng)
    y = math.sin(dlmb) * math.cos(phi2)
    x = math.cos(phi1) * math.sin(phi2) - math.sin(phi1) * math.cos(phi2) * math.cos(dlmb)
    return math.degrees(math.atan2(y, x)) % 360.0


def destination(origin: Point, bearing: float, metres: float) -> Point:
    """The point ``metres`` away from ``origin`` along ``bearing``."""
    delta = metres / EARTH_RADIUS_M
    theta, phi1, lmb1 = math.radians(bearing), math.radians(origin.lat), math.radians(origin.lng)
    phi2 = math.asin(math.sin(phi1) * math.cos(delta) + math.cos(phi1) * math.sin(delta) * math.cos(theta))
    lmb2 = lmb1 + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(phi1), math.cos(delta) - math.sin(phi1) * math.sin(phi2)
    )
    return Point(math.degrees(phi2), (math.degrees(lmb2) + 540.0) % 360.0 - 180.0)


class Route:
    """A closed loop through waypoints: driving past the last one leads back to the first."""

    def __init__(self, waypoints: list[Point]) -> None:
        points = list(waypoints)
        if len(points) < 2:
            raise RouteError("a route needs at least two positions")
        if points[0] != points[-1]:
            points.append(points[0])
        self.points = points
        self._legs = [distance_m(a, b) for a, b in itertools.pairwise(points)]
        self.length_m = sum(self._legs)
        if self.length_m <= 0:
            raise RouteError("the route's positions are all the same point")

    @classmethod
    def around(cls, centre: Point, radius_m: float, waypoints: int = 12) -> Route:
        """A patrol loop of ``waypoints`` positions on a circle of ``radius_m`` around ``centre``."""
        if radius_m <= 0:
            raise RouteError("the radius must be positive")
        return cls([destination(centre, 360.0 * i / waypoints, radius_m) for i in range(waypoints)])

    @classmethod
    def from_geojson(cls, data: Any) -> Route:
        """A LineString, a Feature holding one, or a FeatureCollection with exactly one."""
        geometry = _line_string(data)
        coords = geometry.get("coordinates")
        if not isinstance(coords, list) or not all(
            isinstance(c, list) and len(c) >= 2 and all(isinstance(v, int | float) for v in c[:2])
            for c in coords
        ):
            raise RouteError("LineString coordinates must be [longitude, latitude] pairs")
        # GeoJSON orders coordinates longitude first.
        return cls([Point(float(c[1]), float(c[0])) for c in coords])

    @classmethod
    def load(cls, path: Path) -> Route:
        try:
            return cls.from_geojson(json.loads(path.read_text()))
        except OSError as exc:
            raise RouteError(f"{path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise RouteError(f"{path}: not JSON ({exc.msg})") from None
        except RouteError as exc:
            raise RouteError(f"{path}: {exc}") from None

    def position(self, driven_m: float) -> Point:
        """Where the vehicle is after driving ``driven_m`` metres from the first waypoint (looping)."""
        left = driven_m % self.length_m
        for (a, b), leg in zip(itertools.pairwise(self.points), self._legs, strict=True):
            if left <= leg and leg > 0:
                f = left / leg
                # Linear interpolation in degrees is exact enough over one leg of a patrol route.
                return Point(a.lat + (b.lat - a.lat) * f, a.lng + (b.lng - a.lng) * f)
            left -= leg
        return self.points[-1]


def _line_string(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RouteError("expected a GeoJSON object")
    kind = data.get("type")
    if kind == "LineString":
        return data
    if kind == "Feature":
        return _line_string(data.get("geometry"))
    if kind == "FeatureCollection":
        lines = [
            f["geometry"]
            for f in data.get("features") or []
            if isinstance(f, dict)
            and isinstance(f.get("geometry"), dict)
            and f["geometry"].get("type") == "LineString"
        ]
        if len(lines) != 1:
            raise RouteError(f"the FeatureCollection must hold exactly one LineString, it holds {len(lines)}")
        return lines[0]  # type: ignore[no-any-return]
    raise RouteError(f"expected a LineString or a FeatureCollection with one, got {kind!r}")


class Odometer:
    """Successive fixes along a route: each with its heading from the previous fix."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self._previous: Point | None = None

    def fix(self, driven_m: float) -> tuple[Point, float | None]:
        """The position at ``driven_m`` and the heading since the last fix (towards the route ahead at first)."""
        here = self.route.position(driven_m)
        before = self._previous
        if before is None or distance_m(before, here) < 0.01:
            ahead = self.route.position(driven_m + 1.0)
            heading = bearing_deg(here, ahead) if before is None else None
        else:
            heading = bearing_deg(before, here)
        self._previous = here
        return here, heading
