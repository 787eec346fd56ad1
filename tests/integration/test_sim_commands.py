"""``naboom-sim vehicle``, ``load`` and ``scenario`` against ``naboom serve`` on real PostgreSQL, Redis and Mosquitto."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from naboom_sim.route import Point, distance_m
from tests.integration.incident_helpers import call, ok
from tests.support import MQTT_HOST, MQTT_PORT, Server, Stack, unique_region

SIM = str(Path(sys.executable).parent / "naboom-sim")
BROKER = f"mqtt://{MQTT_HOST}:{MQTT_PORT}"
FARM = Point(-24.5310, 28.7130)


def _sim(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SIM, *args], capture_output=True, text=True, timeout=timeout)


def _region(stack: Stack, admin: str) -> str:
    code = unique_region()
    ok(call(stack, admin, "POST", "/api/regions", json={"code": code, "name": code}), 201)
    return code


def _vehicle(stack: Stack, admin: str, region: str) -> dict[str, Any]:
    body = {"callsign": f"Alpha-{uuid.uuid4().hex[:6]}", "region": region}
    return dict(ok(call(stack, admin, "POST", "/api/vehicles", json=body), 201))


def test_vehicle_pings_appear_on_its_trail_around_the_farm(server: Server) -> None:
    stack = server.stack
    admin = stack.admin()
    region = _region(stack, admin)
    vehicle = _vehicle(stack, admin, region)

    out = _sim(
        "vehicle", "--base-url", stack.base_url, "--token", vehicle["token"], "--around", f"{FARM.lat},{FARM.lng}",
        "--radius-m", "400", "--speed-kmh", "90", "--interval", "0.2", "--count", "5", "--json",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"sent": 5, "accepted": 5, "rate_limited": 0, "errors": 0}

    trail = ok(call(stack, admin, "GET", f"/api/vehicles/{vehicle['id']}/trail"))
    assert trail["total"] == 5
    points = trail["items"]
    assert all(distance_m(FARM, Point(p["lat"], p["lng"])) < 401 for p in points)
    assert all(p["speed"] == 25.0 and 0 <= p["heading"] <= 360 for p in points)
    # It drives: consecutive fixes are apart.
    assert all(
        distance_m(Point(a["lat"], a["lng"]), Point(b["lat"], b["lng"])) > 1
        for a, b in itertools.pairwise(points)
    )


def test_load_reports_every_published_sos_accepted_once(server: Server, tmp_path: Path) -> None:
    stack = server.stack
    region = unique_region()
    devices = tmp_path / "devices.jsonl"
    provisioned = _sim(
        "load", "--provision", "3", "--admin-token", stack.admin(), "--region", region, "--devices", str(devices),
        "--base-url", stack.base_url,
    )
    assert provisioned.returncode == 0, provisioned.stderr
    assert len(devices.read_text().splitlines()) == 3
    operator = stack.operator(region)

    out = _sim(
        "load", "--devices", str(devices), "--broker", BROKER, "--rate", "20", "--duration", "3",
        "--connections", "2", "--base-url", stack.base_url, "--token", operator, "--region", region, "--json",
    )
    assert out.returncode == 0, out.stderr + out.stdout
    (line,) = out.stdout.splitlines()
    report = json.loads(line)
    assert report["published"] == 60
    assert report["accepted"] == report["published"]
    assert (report["lost"], report["doubled"]) == (0, 0)
    assert report["accepted_per_s"] > 0
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert ok(call(stack, operator, "GET", "/api/incidents", limit=1))["total"] == 60


def test_a_scenario_runs_to_completion_and_its_sos_become_incidents(server: Server, tmp_path: Path) -> None:
    stack = server.stack
    admin = stack.admin()
    region = _region(stack, admin)
    (tmp_path / "devices").mkdir()
    for name in ("gate", "house"):
        device = stack.create_device(f"farm-{name}-{uuid.uuid4().hex[:6]}", region)
        (tmp_path / "devices" / f"{name}.json").write_text(json.dumps(device))
    (tmp_path / "alpha.token").write_text(_vehicle(stack, admin, region)["token"] + "\n")
    scenario = tmp_path / "small.toml"
    scenario.write_text(
        f"""
name = "small farm attack"

[[steps]]
name = "patrol"
at = 0
kind = "vehicle"
token_file = "alpha.token"
around = [{FARM.lat}, {FARM.lng}]
radius_m = 300
interval = 0.3
count = 3

[[steps]]
at = 0.5
kind = "sos"
credentials = "devices/gate.json"
msg = "Intruders at the gate"
lat = -24.5312
lng = 28.7121

[[steps]]
at = 1.5
kind = "sos"
credentials = "devices/house.json"
msg = "Break-in at the house"
"""
    )
    out = _sim("scenario", str(scenario), "--base-url", stack.base_url, "--broker", BROKER,
               "--outbox", str(tmp_path / "outbox"), "--json")
    assert out.returncode == 0, out.stderr + out.stdout
    summary = json.loads(out.stdout)
    assert summary["ok"] and summary["scenario"] == "small farm attack"
    patrol, gate, house = summary["steps"]
    assert (patrol["kind"], patrol["sent"], patrol["accepted"]) == ("vehicle", 3, 3)
    assert (gate["queued"], house["queued"]) == (0, 0)

    operator = stack.operator(region)
    incidents = ok(call(stack, operator, "GET", "/api/incidents"))["items"]
    assert {i["id"] for i in incidents} == set(gate["acked"]) | set(house["acked"])
    assert sorted(i["msg"] for i in incidents) == ["Break-in at the house", "Intruders at the gate"]
