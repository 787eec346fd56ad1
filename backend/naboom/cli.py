"""The ``naboom`` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from naboom.logs import configure_logging
from naboom.settings import Settings, get_settings

T = TypeVar("T")

DEMO_REGION = "ZA-LP"
DEMO_USER = "demo"
DEMO_DEVICE = "demo-button-1"


async def _in_session(work: Callable[[Any], Awaitable[T]]) -> T:
    """Await ``work(session)`` in one transaction, committed at the end."""
    from naboom.db.config import database_config

    config = database_config(get_settings())
    try:
        async with config.get_session() as session:
            result = await work(session)
            await session.commit()
            return result
    finally:
        await config.get_engine().dispose()


def _with_session(work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(session)`` in one transaction, committed at the end."""
    return asyncio.run(_in_session(work))


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


def _wait_for_dependencies(settings: Settings, *, redis: bool = True) -> None:
    """Wait (logging each attempt) for the database and Redis; a clear error after the bound, not a crash loop."""
    from naboom.lifecycle import DependencyUnavailable, wait_for_dependencies

    try:
        asyncio.run(wait_for_dependencies(settings, redis=redis))
    except DependencyUnavailable as exc:
        click.echo(f"error: {exc} within {settings.startup_timeout_seconds:g}s (NABOOM_STARTUP_TIMEOUT_SECONDS)", err=True)
        sys.exit(1)


@click.group()
def main() -> None:
    """Naboom NeighborNet: panic alerts from the field to the control room."""


@main.command()
def migrate() -> None:
    """Apply database migrations."""
    from naboom.db.config import database_config, upgrade

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    _wait_for_dependencies(settings, redis=False)
    upgrade(database_config(settings))
    click.echo("database is up to date")


def _serve(settings: Settings) -> None:
    import gc
    import logging
    import signal
    import socket
    from types import FrameType

    import uvicorn

    from naboom.app import create_app

    log_config = configure_logging(settings.log_level, settings.log_format)
    _wait_for_dependencies(settings)
    app = create_app(settings)
    ingest = app.state.mqtt
    feed = app.state.feed

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # The ingest stops taking messages at once, while HTTP requests drain; the lifespan
            # then waits (bounded) for it to acknowledge its batch.
            if sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(RuntimeError):
                    loop = asyncio.get_running_loop()
                    if ingest is not None:
                        loop.call_soon_threadsafe(ingest.request_stop)
                    # Live streams never end on their own: end them now, so they close cleanly
                    # (SSE answers complete, WebSockets get 1012) and monitors reconnect at once.
                    loop.call_soon_threadsafe(feed.end_all)
            super().handle_exit(sig, frame)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # uvicorn's shutdown drops every WebSocket with a bare 1012 at once; let the live
            # handlers send their own close first ("reconnect"; the streams were ended above,
            # but a handler may not have run since), for at most a second.
            feed.end_all()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await feed.closed()
            await super().shutdown(sockets)

    config = uvicorn.Config(
        app,
        log_config=log_config,
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        # uvicorn formats every access line before the logger's level drops it: skip the work when
        # the level hides them anyway. (loop and http stay "auto": uvloop and httptools, installed
        # with the package, are what uvicorn picks.)
        access_log=logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO) <= logging.INFO,
        proxy_headers=True,
        forwarded_allow_ips=list(settings.trusted_proxies),
        # Live streams never end on their own: on SIGTERM, give requests a moment, then close
        # them, so a restart is quick and monitors see the drop and reconnect at once.
        timeout_graceful_shutdown=3,
    )
    # A full collection walks every live object and stalls the loop meanwhile: with 5,000 live
    # connections that was 550-650 ms, every few seconds of a burst (bench/fanout.py), because a
    # broadcast's in-flight objects were promoted and soon triggered the next one. Young
    # generations get more room and full collections come 10x less often; what start-up built
    # lives as long as the process and leaves the collector's view.
    gc.freeze()
    gc.set_threshold(5_000, 20, 100)
    Server(config).run()


@main.command()
def serve() -> None:
    """Run the API and the MQTT ingest (production)."""
    settings = get_settings()
    _serve(settings)


@main.command()
@click.option(
    "--queue",
    "queues",
    type=click.Choice(["critical", "general"]),
    multiple=True,
    help="Queue to work (repeat for both; default: both).",
)
def worker(queues: tuple[str, ...]) -> None:
    """Run a TaskIQ worker: alerts and escalation (critical), housekeeping (general)."""
    from naboom.background.runner import run_worker

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    _wait_for_dependencies(settings)
    asyncio.run(run_worker(settings, queues or ("critical", "general")))


@main.command()
def scheduler() -> None:
    """Run the scheduler of periodic tasks; a second one stands by until the first stops."""
    from naboom.background.runner import run_scheduler_process

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    _wait_for_dependencies(settings)
    asyncio.run(run_scheduler_process(settings))


@main.command()
def bridge() -> None:
    """Run the outbox bridge alone (outbound MQTT); a second one stands by until the first stops."""
    from naboom.outbox.bridge import run_bridge_process

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(run_bridge_process(settings))


@main.command()
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for the API's answer.")
def health(timeout: float) -> None:
    """Ask the running API for its health; prints the JSON and exits 1 when degraded, 2 when unreachable."""
    import httpx

    settings = get_settings()
    url = f"http://127.0.0.1:{settings.http_port}/monitoring/health/"
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        click.echo(json.dumps({"status": "down", "detail": f"no answer from {url}: {exc.__class__.__name__}"}))
        sys.exit(2)
    click.echo(json.dumps(response.json(), indent=2, sort_keys=True))
    if response.status_code != 200:
        sys.exit(1)


@main.command()
def dev() -> None:
    """Everything in one process on embedded defaults; creates a demo login and device."""
    from naboom.db.config import database_config, upgrade

    settings = get_settings()
    upgrade(database_config(settings))
    demo = _demo_credentials(settings)
    base = f"http://{settings.http_host}:{settings.http_port}"
    target = settings.mqtt_target
    click.echo(
        "\n".join(
            [
                "",
                "Naboom NeighborNet (development, embedded defaults)",
                f"  API        {base}/api/   (OpenAPI: {base}/schema)",
                f"  Live feed  {base}/panic/api/stream?region={DEMO_REGION}",
                f"  Monitor    {base}/monitor/",
                f"  MQTT       mqtt://{target.host}:{target.port}  ws://{target.host}:{settings.embedded_mqtt_ws_port}",
                f"  Database   {settings.database_url}",
                f"  Login      {demo['username']} / {demo['password']}  (operator of {DEMO_REGION})",
                f"  Device     {json.dumps(demo['device'])}",
                "",
            ]
        )
    )
    _serve(settings)


def _demo_credentials(settings: Settings) -> dict[str, Any]:
    """Create the demo operator and device once; their credentials live in ``var/demo.json``."""
    import secrets
    from datetime import timedelta

    path = settings.var_dir / "demo.json"
    if path.exists():
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    from naboom.devices.schemas import DeviceCreate
    from naboom.devices.service import DeviceService
    from naboom.regions.service import RegionService
    from naboom.users.service import OperatorService

    password = secrets.token_urlsafe(9)

    async def work(session: Any) -> dict[str, Any]:
        await RegionService(session=session).ensure([DEMO_REGION])
        users = OperatorService(session=session)
        if not await users.repository.exists(username=DEMO_USER):
            await users.create_user(DEMO_USER, password, "operator", [DEMO_REGION])
        devices = DeviceService(session=session)
        if await devices.repository.exists(pid=DEMO_DEVICE):
            credentials = await devices.rotate(DEMO_DEVICE, grace=timedelta(0))
        else:
            credentials = await devices.create_device(DeviceCreate(pid=DEMO_DEVICE, region=DEMO_REGION, label="Demo"))
        return {"username": DEMO_USER, "password": password, "device": msgspec.to_builtins(credentials)}

    demo = _with_session(work)
    path.write_text(json.dumps(demo))
    path.chmod(0o600)
    return demo


@main.group()
def user() -> None:
    """Manage control-room users."""


@user.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "operator", "viewer"]), required=True)
@click.option("--region", "regions", multiple=True, help="A region this user sees (repeat for several).")
@click.option("--password", help="Read from standard input when not given.")
def user_create(name: str, role: str, regions: tuple[str, ...], password: str | None) -> None:
    """Create a user; the password comes from --password or stdin."""
    from naboom.errors import NaboomError
    from naboom.regions.service import RegionService
    from naboom.users.service import OperatorService

    if password is None:
        password = sys.stdin.readline().rstrip("\n")
    async def work(session: Any) -> Any:
        await RegionService(session=session).ensure(regions)
        return await OperatorService(session=session).create_user(name, password, role, regions)

    try:
        created = _with_session(work)
    except NaboomError as exc:
        _fail(exc)
    click.echo(msgspec.json.encode(created).decode())


@main.group()
def device() -> None:
    """Manage field devices and their keys."""


BROKER_OPTION = click.option(
    "--broker/--no-broker",
    default=None,
    help="Also make the device's broker account (default: when NABOOM_MQTT_ADMIN_URL is set).",
)


def _broker_url(wanted: bool | None) -> str | None:
    """The admin URL when this command should manage the device's broker account."""
    url = get_settings().mqtt_admin_url
    if wanted and url is None:
        _fail(click.UsageError("--broker needs NABOOM_MQTT_ADMIN_URL"))
    return url if wanted is not False else None


def _with_broker_account(
    pid: str, url: str | None, work: Callable[[Any], Awaitable[tuple[Any, bool]]]
) -> dict[str, Any]:
    """Run the device transaction, then (outside it) set the broker account; the printable result.

    The admin connection is opened first, so a broker that is down stops the command before
    anything changes. Should the account fail after the commit, the new secret is still
    printed (it is shown only once) and the command exits 1 naming the repair.
    """
    from naboom.devices.broker import BrokerAdmin, BrokerError

    async def run() -> dict[str, Any]:
        if url is None:
            credentials, _ = await _in_session(work)
            return dict(msgspec.to_builtins(credentials))
        async with BrokerAdmin.from_url(url) as broker:
            credentials, active = await _in_session(work)
            result = dict(msgspec.to_builtins(credentials))
            try:
                account = await broker.provision_device(pid, enabled=active)
            except BrokerError as exc:
                click.echo(json.dumps(result))
                click.echo(f"error: {exc}; the device is saved: run `naboom broker provision {pid}`", err=True)
                sys.exit(1)
            return {**result, "mqtt_username": account.username, "mqtt_password": account.password}

    return asyncio.run(run())


@device.command("create")
@click.argument("pid")
@click.option("--region", required=True)
@click.option("--label")
@BROKER_OPTION
def device_create(pid: str, region: str, label: str | None, broker: bool | None) -> None:
    """Register a device; prints {"pid","kid","secret"} (+ "mqtt_username","mqtt_password"), shown only here."""
    from naboom.devices.schemas import DeviceCreate
    from naboom.devices.service import DeviceService
    from naboom.errors import NaboomError
    from naboom.regions.service import RegionService

    try:
        data = msgspec.convert({"pid": pid, "region": region, "label": label}, DeviceCreate)

        async def work(session: Any) -> tuple[Any, bool]:
            await RegionService(session=session).ensure([region])
            return await DeviceService(session=session).create_device(data), True

        result = _with_broker_account(pid, _broker_url(broker), work)
    except (NaboomError, msgspec.ValidationError) as exc:
        _fail(exc)
    click.echo(json.dumps(result))


@device.command("rotate")
@click.argument("pid")
@BROKER_OPTION
def device_rotate(pid: str, broker: bool | None) -> None:
    """A new key (and broker password), printed like ``create``; the old key stays valid for the grace period."""
    from datetime import timedelta

    from naboom.devices.service import DeviceService
    from naboom.errors import NaboomError

    grace = timedelta(seconds=get_settings().key_grace_seconds)

    async def work(session: Any) -> tuple[Any, bool]:
        service = DeviceService(session=session)
        credentials = await service.rotate(pid, grace)
        return credentials, (await service.get_device(pid)).active

    try:
        result = _with_broker_account(pid, _broker_url(broker), work)
    except NaboomError as exc:
        _fail(exc)
    click.echo(json.dumps(result))


@main.group()
def broker() -> None:
    """Accounts on a production Mosquitto (Dynamic Security plugin)."""


@broker.command("init")
@click.option("--config", "path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The Dynamic Security JSON file to write (the broker's plugin_opt_config_file).")
@click.option("--admin-user", required=True, help="Password from NABOOM_MQTT_ADMIN_PASSWORD.")
@click.option("--app-user", "app_users", multiple=True, required=True,
              help="The app's user (repeatable, all share NABOOM_MQTT_APP_PASSWORD).")
@click.option("--if-missing", is_flag=True, help="Do nothing when the file exists (a one-shot init container).")
@click.option("--force", is_flag=True, help="Overwrite an existing file (its device accounts are lost).")
def broker_init(path: Path, admin_user: str, app_users: tuple[str, ...], if_missing: bool, force: bool) -> None:
    """Write the broker's first account file: admin, app user(s), roles; no devices yet."""
    import os

    from naboom.devices.dynsec import write_dynsec_file

    if path.exists() and not force:
        if if_missing:
            click.echo(f"{path} exists; left as it is")
            return
        _fail(FileExistsError(f"{path} exists and holds the broker's device accounts; --force overwrites it"))
    # Passwords only from the environment: argv is visible to every user of the machine.
    admin_password = os.environ.get("NABOOM_MQTT_ADMIN_PASSWORD", "")
    app_password = os.environ.get("NABOOM_MQTT_APP_PASSWORD", "")
    if not admin_password or not app_password:
        _fail(ValueError("set NABOOM_MQTT_ADMIN_PASSWORD and NABOOM_MQTT_APP_PASSWORD"))
    try:
        write_dynsec_file(path, admin_user, admin_password, dict.fromkeys(app_users, app_password))
    except (ValueError, OSError) as exc:
        _fail(exc)
    click.echo(f"wrote {path}: admin {admin_user!r}, app {', '.join(repr(u) for u in app_users)}")


def _broker_admin_call(pid: str, action: str) -> Any:
    from naboom.devices.broker import BrokerAdmin, BrokerError

    url = _broker_url(True)
    assert url is not None

    async def run() -> Any:
        async with BrokerAdmin.from_url(url) as admin:
            if action == "provision":
                return await admin.provision_device(pid)
            return await (admin.disable_device(pid) if action == "disable" else admin.enable_device(pid))

    try:
        return asyncio.run(run())
    except BrokerError as exc:
        _fail(exc)


@broker.command("provision")
@click.argument("pid")
def broker_provision(pid: str) -> None:
    """Create or reset one device's broker account; prints {"pid","mqtt_username","mqtt_password"}."""
    account = _broker_admin_call(pid, "provision")
    click.echo(json.dumps({"pid": pid, "mqtt_username": account.username, "mqtt_password": account.password}))


@broker.command("disable")
@click.argument("pid")
def broker_disable(pid: str) -> None:
    """Refuse a device's broker logins (its open connection is dropped)."""
    found = _broker_admin_call(pid, "disable")
    click.echo(json.dumps({"pid": pid, "disabled": True, "account": found}))


@broker.command("enable")
@click.argument("pid")
def broker_enable(pid: str) -> None:
    """Accept a device's broker logins again."""
    found = _broker_admin_call(pid, "enable")
    click.echo(json.dumps({"pid": pid, "enabled": True, "account": found}))


from naboom.deploy.cli import edge  # noqa: E402  (its own module: the deployment's configs)

main.add_command(edge)
