"""Patrol routes: looping interpolation by distance, headings between fixes, GeoJSON and generated loops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from naboom_sim.route import Odometer, Point, Route, RouteError, bearing_deg, distance_m
from naboom_sim.vehicle import iso_utc

# About 1.1 km north and 1.0 km east of a farm near Naboomspruit.
A, B, C = Point(-24.53, 28.71), Point(-24.52, 28.71), Point(-24.52, 28.72)


def test_positions_are_interpolated_along_the_legs_and_loop_back() -> None:
    route = Route([A, B, C])
    ab, bc = distance_m(A, B), distance_m(B, C)
    assert route.length_m == pytest.approx(ab + bc + distance_m(C, A))
    middle = route.position(ab / 2)
    assert middle.lat == pytest.approx(-24.525) and middle.lng == pytest.approx(28.71)
    assert route.position(ab + bc / 2).lng == pytest.approx(28.715)
    # Past the end it starts over.
    again = route.position(route.length_m + ab / 2)
    assert (again.lat, again.lng) == pytest.approx((middle.lat, middle.lng))


def test_heading_follows_consecutive_positions() -> None:
    odometer = Odometer(Route([A, B, C]))
    ab = distance_m(A, B)
    _, first = odometer.fix(0)
    assert first == pytest.approx(0.0, abs=0.01)  # due north, towards B
    _, north = odometer.fix(ab / 2)
    _, east = odometer.fix(ab + 200)
    assert north == pytest.approx(0.0, abs=0.5)
    assert 0 < east < 90  # from the north leg onto the east leg: a north-easterly step
    _, east2 = odometer.fix(ab + 400)
    assert east2 == pytest.approx(90.0, abs=0.5)
    _, standing = odometer.fix(ab + 400)
    assert standing is None


def test_bearing_of_the_compass_points() -> None:
    assert bearing_deg(A, B) == pytest.approx(0.0, abs=0.01)
    assert bearing_deg(B, A) == pytest.approx(180.0, abs=0.01)
    assert bearing_deg(B, C) == pytest.approx(90.0, abs=0.01)
    assert bearing_deg(C, B) == pytest.approx(270.0, abs=0.01)


def test_a_generated_loop_keeps_its_radius_around_the_point() -> None:
    route = Route.around(A, 800, waypoints=12)
    assert len(route.points) == 13
    assert all(distance_m(A, p) == pytest.approx(800, rel=1e-6) for p in route.points)
    with pytest.raises(RouteError, match="radius"):
        Route.around(A, 0)


def test_geojson_routes_are_longitude_first(tmp_path: Path) -> None:
    line = {"type": "LineString", "coordinates": [[28.71, -24.53], [28.71, -24.52]]}
    assert Route.from_geojson(line).points[:2] == [A, B]
    collection = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": line, "properties": {}}]}
    path = tmp_path / "route.geojson"
    path.write_text(json.dumps(collection))
    assert Route.load(path).points[1] == B
    with pytest.raises(RouteError, match="exactly one LineString, it holds 2"):
        Route.from_geojson({**collection, "features": collection["features"] * 2})
    with pytest.raises(RouteError, match="at least two"):
        Route.from_geojson({"type": "LineString", "coordinates": [[28.71, -24.53]]})
    with pytest.raises(RouteError, match="got 'Point'"):
        Route.from_geojson({"type": "Point", "coordinates": [28.71, -24.53]})


def test_ping_timestamps_are_iso_utc_with_z() -> None:
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
