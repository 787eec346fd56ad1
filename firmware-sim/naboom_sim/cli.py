"""The ``naboom-sim`` command: ``sos``, ``outbox``, ``vehicle``, ``load`` and ``scenario``.

Exit codes: 0 everything delivered / done, 2 usage or credential errors, 3 SOS still queued in
the outbox (``sos``/``outbox flush``), 1 anything else that failed (a scenario step, a lost SOS
under ``load``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx

from naboom_sim.credentials import Credentials, CredentialsError, load_credentials, load_devices
from naboom_sim.load import LoadPlan, Progress, run_load
from naboom_sim.load import provision as provision_devices
from naboom_sim.outbox import Outbox, default_outbox_root
from naboom_sim.route import Point, Route, RouteError
from naboom_sim.scenario import Context, ScenarioError, parse_scenario, run_scenario
from naboom_sim.sos import Delivered, DeliveryResult, LoginRefused, Patience, build_sos, deliver_pending
from naboom_sim.transport import Broker, BrokerUrlError, parse_broker_url
from naboom_sim.vehicle import Drive, drive

EXIT_QUEUED = 3
F = TypeVar("F", bound=Callable[..., Any])


class UsageProblem(click.ClickException):
    """Bad input the user can fix (exit code 2, like click's own usage errors)."""

    exit_code = 2


def _usage_errors(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (CredentialsError, BrokerUrlError, RouteError, ScenarioError, LoginRefused) as exc:
            raise UsageProblem(str(exc)) from None

    return wrapper  # type: ignore[return-value]


@click.group()
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Naboom field-device simulator: signed SOS, patrol vehicles, load and scenarios."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")


def _device_options(func: F) -> F:
    options = [
        click.option(
            "--credentials",
            "credentials_path",
            required=True,
            type=click.Path(path_type=Path),
            help="The device's JSON from `naboom device create`.",
        ),
        click.option(
            "--broker", required=True, help="mqtt://host:port, mqtts://…, ws://host:port/path or wss://…"
        ),
        click.option("--username", help="Broker login (overrides mqtt_username in the credentials)."),
        click.option("--password", help="Broker password (overrides mqtt_password in the credentials)."),
        click.option(
            "--ca",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="CA certificate to trust for mqtts/wss (e.g. a self-signed one).",
        ),
        click.option("--insecure", is_flag=True, help="Skip TLS verification (lab use only)."),
        click.option(
            "--outbox",
            "outbox_root",
            type=click.Path(file_okay=False, path_type=Path),
            help="Outbox root (default ~/.naboom-sim/outbox); each device has its folder below.",
        ),
        click.option(
            "--ack-timeout",
            default=10.0,
            show_default=True,
            type=click.FloatRange(min=0.1),
            help="Seconds to wait for the ack before publishing again.",
        ),
        click.option(
            "--give-up-after",
            type=click.FloatRange(min=0),
            help="Stop retrying after this many seconds, leaving the rest queued (default: never).",
        ),
        click.option("--json", "as_json", is_flag=True, help="One JSON object per delivered SOS on stdout."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _device(credentials_path: Path, username: str | None, password: str | None) -> Credentials:
    return load_credentials(credentials_path).with_login(username, password)


def _deliver(
    device: Credentials,
    broker: Broker,
    outbox: Outbox,
    ack_timeout: float,
    give_up_after: float | None,
    as_json: bool,
) -> None:
    def report(d: Delivered) -> None:
        if as_json:
            click.echo(d.to_json())
        else:
            click.echo(
                f"delivered nonce {d.nonce} (ts {d.ts}) -> incident {d.incident_id} "
                f"after {d.attempts} attempt(s), {d.latency_ms:.0f} ms"
            )

    try:
        result: DeliveryResult = asyncio.run(
            deliver_pending(outbox, device, broker, Patience(ack_timeout, give_up_after), report)
        )
    except KeyboardInterrupt:
        # Nothing is lost: what was not acknowledged is still in the outbox.
        click.echo(f"interrupted; {len(outbox)} SOS still queued in {outbox.dir}", err=True)
        sys.exit(EXIT_QUEUED)
    if result.queued:
        click.echo(f"{result.queued} SOS still queued in {outbox.dir} ({result.last_error})", err=True)
        sys.exit(EXIT_QUEUED)


@main.command()
@_device_options
@click.option("--msg", help='The message (signed; the server defaults to "SOS").')
@click.option("--lat", type=click.FloatRange(-90, 90), help="Latitude, WGS84 degrees (with --lng).")
@click.option("--lng", type=click.FloatRange(-180, 180), help="Longitude, WGS84 degrees (with --lat).")
@click.option("--acc", type=click.FloatRange(min=0), help="Location accuracy in metres.")
@_usage_errors
def sos(
    credentials_path: Path,
    broker: str,
    username: str | None,
    password: str | None,
    ca: Path | None,
    insecure: bool,
    outbox_root: Path | None,
    ack_timeout: float,
    give_up_after: float | None,
    as_json: bool,
    msg: str | None,
    lat: float | None,
    lng: float | None,
    acc: float | None,
) -> None:
    """Raise one signed SOS: store it in the outbox, then deliver the outbox until acknowledged."""
    if (lat is None) != (lng is None):
        raise UsageProblem("give both --lat and --lng, or neither")
    device = _device(credentials_path, username, password)
    target = parse_broker_url(broker, ca, insecure)
    outbox = Outbox(outbox_root or default_outbox_root(), device.pid)
    entry = outbox.add(build_sos(device, msg, lat, lng, acc))
    if not as_json:
        click.echo(f"queued nonce {entry.nonce} (ts {entry.payload['ts']}) in {outbox.dir}", err=True)
    _deliver(device, target, outbox, ack_timeout, give_up_after, as_json)


@main.group()
def outbox() -> None:
    """Look at or deliver a device's queued SOS."""


@outbox.command("list")
@click.option("--credentials", "credentials_path", required=True, type=click.Path(path_type=Path))
@click.option("--broker", help="Accepted for symmetry with flush; not used.")
@click.option("--outbox", "outbox_root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry.")
@_usage_errors
def outbox_list(credentials_path: Path, broker: str | None, outbox_root: Path | None, as_json: bool) -> None:
    """The device's pending SOS, oldest first."""
    device = load_credentials(credentials_path)
    entries = Outbox(outbox_root or default_outbox_root(), device.pid).entries()
    for entry in entries:
        p = entry.payload
        if as_json:
            click.echo(
                json.dumps(
                    {"nonce": p["nonce"], "ts": p["ts"], "msg": p.get("msg"), "queued_at": entry.queued_at}
                )
            )
        else:
            click.echo(f"{p['nonce']}  ts {p['ts']}  {p.get('msg', 'SOS')!r}")
    if not as_json:
        click.echo(f"{len(entries)} pending", err=True)


@outbox.command("flush")
@_device_options
@_usage_errors
def outbox_flush(
    credentials_path: Path,
    broker: str,
    username: str | None,
    password: str | None,
    ca: Path | None,
    insecure: bool,
    outbox_root: Path | None,
    ack_timeout: float,
    give_up_after: float | None,
    as_json: bool,
) -> None:
    """Deliver what is pending without raising a new SOS."""
    device = _device(credentials_path, username, password)
    target = parse_broker_url(broker, ca, insecure)
    box = Outbox(outbox_root or default_outbox_root(), device.pid)
    _deliver(device, target, box, ack_timeout, give_up_after, as_json)


def _verify(ca: Path | None, insecure: bool) -> ssl.SSLContext | bool:
    if insecure:
        return False
    return ssl.create_default_context(cafile=str(ca)) if ca else True


def _point(value: str) -> Point:
    try:
        lat, lng = (float(v) for v in value.split(","))
    except ValueError:
        raise UsageProblem(f"--around must be LAT,LNG, got {value!r}") from None
    return Point(lat, lng)


@main.command()
@click.option(
    "--base-url", required=True, help="The site, e.g. https://naboom.example (or http://127.0.0.1:8000)."
)
@click.option("--token", required=True, help="The vehicle's token (shown once at registration).")
@click.option(
    "--route",
    "route_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="GeoJSON LineString (or a FeatureCollection with one) driven in a loop.",
)
@click.option("--around", help="LAT,LNG: patrol a generated loop around this point.")
@click.option("--radius-m", default=500.0, show_default=True, type=click.FloatRange(min=1))
@click.option("--speed-kmh", default=40.0, show_default=True, type=click.FloatRange(min=0, max=360))
@click.option(
    "--interval",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0.05),
    help="Seconds between pings.",
)
@click.option("--duration", type=click.FloatRange(min=0), help="Stop after this many seconds.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many pings.")
@click.option("--ca", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--insecure", is_flag=True, help="Skip TLS verification (lab use only).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary at the end.")
@_usage_errors
def vehicle(
    base_url: str,
    token: str,
    route_path: Path | None,
    around: str | None,
    radius_m: float,
    speed_kmh: float,
    interval: float,
    duration: float | None,
    count: int | None,
    ca: Path | None,
    insecure: bool,
    as_json: bool,
) -> None:
    """Drive a patrol vehicle along a route, pinging its position."""
    if (route_path is None) == (around is None):
        raise UsageProblem("give either --route FILE.geojson or --around LAT,LNG")
    route = Route.load(route_path) if route_path else Route.around(_point(around or ""), radius_m)
    plan = Drive(speed_kmh, interval, duration, count)

    async def go() -> dict[str, object]:
        async with httpx.AsyncClient(base_url=base_url, verify=_verify(ca, insecure), timeout=30) as http:
            return (await drive(http, token, route, plan)).as_dict()

    summary = asyncio.run(go())
    click.echo(
        json.dumps(summary)
        if as_json
        else f"sent {summary['sent']} pings: {summary['accepted']} accepted, {summary['rate_limited']} rate-limited, "
        f"{summary['errors']} errors"
    )


@main.command()
@click.option(
    "--devices",
    "devices_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON lines of device credentials (written by --provision).",
)
@click.option("--broker", help="Broker URL (mqtt://, mqtts://, ws://, wss://).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="SOS per second over all devices.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Seconds of publishing.")
@click.option(
    "--connections",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="MQTT connections (one per device instead when the devices have broker logins).",
)
@click.option(
    "--grace",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds after the end to wait for events before counting an SOS as lost.",
)
@click.option("--base-url", required=True, help="The site, for the live feed (and --provision).")
@click.option("--token", help="An operator token of --region (for the live feed).")
@click.option("--region", required=True, help="The devices' region, whose live feed is read.")
@click.option(
    "--provision", type=click.IntRange(min=1), help="First create this many devices into --devices."
)
@click.option("--admin-token", help="An admin token (for --provision).")
@click.option("--ca", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--insecure", is_flag=True, help="Skip TLS verification (lab use only).")
@click.option("--json", "as_json", is_flag=True, help="Exactly one JSON line with the report on stdout.")
@click.option(
    "--progress/--no-progress", default=None, help="Progress on stderr (default: when stderr is a tty)."
)
@_usage_errors
def load(
    devices_path: Path,
    broker: str | None,
    rate: float | None,
    duration: float | None,
    connections: int,
    grace: float,
    base_url: str,
    token: str | None,
    region: str,
    provision: int | None,
    admin_token: str | None,
    ca: Path | None,
    insecure: bool,
    as_json: bool,
    progress: bool | None,
) -> None:
    """Publish signed SOS at a rate and measure publish->event latency on the region's live feed."""
    running = rate is not None or duration is not None
    if running and (rate is None or duration is None or broker is None or token is None):
        raise UsageProblem("a load run needs --rate, --duration, --broker and --token")
    if provision is not None and admin_token is None:
        raise UsageProblem("--provision needs --admin-token")
    if provision is None and not running:
        raise UsageProblem("nothing to do: give --provision N and/or --rate R --duration S")
    target = parse_broker_url(broker, ca, insecure) if broker else None
    show = sys.stderr.isatty() if progress is None else progress

    async def go() -> dict[str, Any] | None:
        async with httpx.AsyncClient(base_url=base_url, verify=_verify(ca, insecure), timeout=30) as http:
            if provision is not None:
                assert admin_token is not None
                await provision_devices(http, admin_token, region, provision, devices_path)
                click.echo(f"provisioned {provision} devices into {devices_path}", err=True)
            if not running:
                return None
            assert target is not None and rate is not None and duration is not None and token is not None
            devices = load_devices(devices_path)
            plan = LoadPlan(rate, duration, connections, grace)
            return await run_load(devices, target, http, region, token, plan, Progress(show))

    try:
        report = asyncio.run(go())
    except httpx.HTTPStatusError as exc:
        raise click.ClickException(str(exc)) from None
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from None
    if report is None:
        return
    if as_json:
        click.echo(json.dumps(report))
    else:
        lat = report["latency_ms"]
        click.echo(
            f"published {report['published']}, accepted {report['accepted']} ({report['accepted_per_s']}/s), "
            f"lost {report['lost']}, doubled {report['doubled']}; latency ms p50 {lat['p50']} p90 {lat['p90']} "
            f"p99 {lat['p99']} max {lat['max']}"
        )
    if report["lost"] or report["doubled"]:
        sys.exit(1)


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--base-url", help="Overrides the scenario's base_url.")
@click.option("--broker", help="Overrides the scenario's broker.")
@click.option("--token", help="Operator token for load steps without a token of their own.")
@click.option("--ca", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--insecure", is_flag=True, help="Skip TLS verification (lab use only).")
@click.option("--outbox", "outbox_root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="The summary as one JSON line.")
@_usage_errors
def scenario(
    path: Path,
    base_url: str | None,
    broker: str | None,
    token: str | None,
    ca: Path | None,
    insecure: bool,
    outbox_root: Path | None,
    as_json: bool,
) -> None:
    """Run a timed scenario file (steps of kind sos, vehicle and load) and summarise it."""
    parsed = parse_scenario(path)
    context = Context(base_url, broker, token, ca, insecure, outbox_root or default_outbox_root())
    outcomes = asyncio.run(run_scenario(parsed, context))
    steps: list[dict[str, Any]] = [
        {
            "step": o.step.number,
            "name": o.step.name,
            "kind": o.step.kind,
            "at": o.step.at,
            "ok": o.ok,
            **o.detail,
        }
        for o in outcomes
    ]
    ok = all(o.ok for o in outcomes)
    if as_json:
        click.echo(json.dumps({"scenario": parsed.name, "ok": ok, "steps": steps}))
    else:
        click.echo(f"scenario {parsed.name}:")
        for step in steps:
            extra = {k: v for k, v in step.items() if k not in ("step", "name", "kind", "at", "ok")}
            click.echo(
                f"  [{'ok' if step['ok'] else 'FAILED'}] t+{step['at']:g}s {step['name']} ({step['kind']}): "
                f"{json.dumps(extra)}"
            )
    if not ok:
        sys.exit(1)
