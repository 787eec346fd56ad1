"""Scenarios: a timed script of SOS, vehicles and load, each step starting ``at`` seconds after the start.

File paths inside a scenario (credentials, routes, device lists, token files) are relative to
the scenario file, so a scenario folder can be moved or committed as a whole.
"""

from __future__ import annotations

import asyncio
import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from naboom_sim.credentials import CredentialsError, load_credentials, load_devices
from naboom_sim.load import LoadPlan, run_load
from naboom_sim.outbox import Outbox, default_outbox_root
from naboom_sim.route import Point, Route, RouteError
from naboom_sim.sos import LoginRefused, Patience, build_sos, deliver_pending
from naboom_sim.transport import Broker, parse_broker_url
from naboom_sim.vehicle import Drive, drive

KINDS = ("sos", "vehicle", "load")
_COMMON = {"at", "kind", "name"}
_ALLOWED = {
    "sos": _COMMON | {"credentials", "msg", "lat", "lng", "acc", "ack_timeout", "give_up_after", "broker"},
    "vehicle": _COMMON
    | {
        "token",
        "token_file",
        "token_env",
        "route",
        "around",
        "radius_m",
        "speed_kmh",
        "interval",
        "duration",
        "count",
    },
    "load": _COMMON
    | {
        "devices",
        "rate",
        "duration",
        "connections",
        "region",
        "grace",
        "token",
        "token_file",
        "token_env",
        "broker",
    },
}
_REQUIRED = {"sos": {"credentials"}, "vehicle": set(), "load": {"devices", "rate", "duration", "region"}}


class ScenarioError(ValueError):
    """The scenario file cannot be run; the message names the step and the key."""


@dataclass(frozen=True)
class Step:
    """One validated step; ``options`` keep the file's keys (paths already resolved)."""

    number: int
    at: float
    kind: str
    name: str
    options: dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    steps: list[Step]
    base_url: str | None = None
    broker: str | None = None


@dataclass
class Context:
    """What the command line supplies to every step (overriding the scenario's own defaults)."""

    base_url: str | None = None
    broker: str | None = None
    token: str | None = None
    ca: Path | None = None
    insecure: bool = False
    outbox_root: Path = field(default_factory=default_outbox_root)


@dataclass
class Outcome:
    """How one step went, for the summary."""

    step: Step
    ok: bool
    detail: dict[str, Any]


def parse_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file; every error says where (step number, key) and why."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML ({exc})") from None
    unknown = set(data) - {"name", "base_url", "broker", "steps"}
    if unknown:
        raise ScenarioError(f"{path}: unknown top-level key(s): {', '.join(sorted(unknown))}")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ScenarioError(f"{path}: no steps (write one [[steps]] table per step)")
    steps = [_step(path, i, raw) for i, raw in enumerate(raw_steps, 1)]
    return Scenario(str(data.get("name", path.stem)), path, steps, data.get("base_url"), data.get("broker"))


def _step(path: Path, number: int, raw: Any) -> Step:
    where = f"{path}: step {number}"
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: must be a table")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ScenarioError(f"{where}: 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    at = raw.get("at", 0)
    if not isinstance(at, int | float) or isinstance(at, bool) or at < 0:
        raise ScenarioError(f"{where}: 'at' must be seconds from the start (a number >= 0)")
    if unknown := set(raw) - _ALLOWED[kind]:
        raise ScenarioError(f"{where} ({kind}): unknown key(s): {', '.join(sorted(unknown))}")
    if missing := _REQUIRED[kind] - set(raw):
        raise ScenarioError(f"{where} ({kind}): missing key(s): {', '.join(sorted(missing))}")
    options = dict(raw)
    base = path.parent
    for key in ("credentials", "devices", "route", "token_file"):
        if key in options:
            if not isinstance(options[key], str):
                raise ScenarioError(f"{where}: {key!r} must be a file path")
            options[key] = (base / options[key]).resolve()
    if kind == "vehicle":
        if ("route" in options) == ("around" in options):
            raise ScenarioError(
                f"{where} (vehicle): give either 'route' (GeoJSON file) or 'around' = [lat, lng]"
            )
        if "around" in options:
            around = options["around"]
            if not (
                isinstance(around, list)
                and len(around) == 2
                and all(isinstance(v, int | float) for v in around)
            ):
                raise ScenarioError(f"{where} (vehicle): 'around' must be [lat, lng]")
        if sum(k in options for k in ("token", "token_file", "token_env")) != 1:
            raise ScenarioError(f"{where} (vehicle): give exactly one of 'token', 'token_file', 'token_env'")
        if "duration" not in options and "count" not in options:
            raise ScenarioError(f"{where} (vehicle): give 'duration' or 'count', or the scenario never ends")
    if kind == "sos" and ("lat" in options) != ("lng" in options):
        raise ScenarioError(f"{where} (sos): give both 'lat' and 'lng', or neither")
    name = str(options.pop("name", f"{kind} #{number}"))
    return Step(number, float(at), kind, name, options)


def _token(step: Step, fallback: str | None) -> str:
    options = step.options
    if "token" in options:
        return str(options["token"])
    if "token_file" in options:
        return Path(options["token_file"]).read_text().strip()
    if "token_env" in options:
        value = os.environ.get(str(options["token_env"]))
        if not value:
            raise ScenarioError(
                f"step {step.number}: the environment variable {options['token_env']} is not set"
            )
        return value
    if fallback:
        return fallback
    raise ScenarioError(
        f"step {step.number} ({step.kind}): no token (give --token or token/token_file/token_env)"
    )


async def run_scenario(scenario: Scenario, context: Context) -> list[Outcome]:
    """Run every step at its time, concurrently; returns their outcomes in step order."""
    base_url = context.base_url or scenario.base_url
    broker_url = context.broker or scenario.broker
    start = time.monotonic()
    verify: Any = True
    if context.ca is not None:
        import ssl

        verify = ssl.create_default_context(cafile=str(context.ca))
    if context.insecure:
        verify = False
    async with httpx.AsyncClient(base_url=base_url or "http://invalid", verify=verify, timeout=30) as http:

        async def one(step: Step) -> Outcome:
            await asyncio.sleep(max(0.0, start + step.at - time.monotonic()))
            try:
                detail = await _run_step(step, context, http, base_url, broker_url)
            except (
                ScenarioError,
                CredentialsError,
                RouteError,
                LoginRefused,
                httpx.HTTPError,
                OSError,
                ValueError,
            ) as exc:
                return Outcome(step, False, {"error": str(exc)})
            return Outcome(step, bool(detail.pop("ok", True)), detail)

        return list(await asyncio.gather(*(one(step) for step in scenario.steps)))


def _broker(step: Step, broker_url: str | None, context: Context) -> Broker:
    url = step.options.get("broker", broker_url)
    if not url:
        raise ScenarioError(f"step {step.number} ({step.kind}): no broker (give --broker or broker = ...)")
    return parse_broker_url(str(url), context.ca, context.insecure)


async def _run_step(
    step: Step, context: Context, http: httpx.AsyncClient, base_url: str | None, broker_url: str | None
) -> dict[str, Any]:
    o = step.options
    if step.kind in ("vehicle", "load") and not base_url:
        raise ScenarioError(
            f"step {step.number} ({step.kind}): no base URL (give --base-url or base_url = ...)"
        )
    if step.kind == "sos":
        device = load_credentials(Path(o["credentials"]))
        outbox = Outbox(context.outbox_root, device.pid)
        outbox.add(build_sos(device, o.get("msg"), o.get("lat"), o.get("lng"), o.get("acc")))
        patience = Patience(float(o.get("ack_timeout", 10.0)), float(o.get("give_up_after", 120.0)))
        result = await deliver_pending(outbox, device, _broker(step, broker_url, context), patience)
        return {
            "ok": result.queued == 0,
            "pid": device.pid,
            "acked": [d.incident_id for d in result.delivered],
            "queued": result.queued,
        }
    if step.kind == "vehicle":
        if "route" in o:
            route = Route.load(Path(o["route"]))
        else:
            route = Route.around(Point(*map(float, o["around"])), float(o.get("radius_m", 500.0)))
        plan = Drive(
            speed_kmh=float(o.get("speed_kmh", 40.0)),
            interval=float(o.get("interval", 5.0)),
            duration=float(o["duration"]) if "duration" in o else None,
            count=int(o["count"]) if "count" in o else None,
        )
        pings = await drive(http, _token(step, None), route, plan)
        return {"ok": pings.errors == 0, **pings.as_dict()}
    devices = load_devices(Path(o["devices"]))
    load_plan = LoadPlan(
        float(o["rate"]), float(o["duration"]), int(o.get("connections", 4)), float(o.get("grace", 10.0))
    )
    report = await run_load(
        devices,
        _broker(step, broker_url, context),
        http,
        str(o["region"]),
        _token(step, context.token),
        load_plan,
    )
    return {"ok": report["lost"] == 0, **report}
