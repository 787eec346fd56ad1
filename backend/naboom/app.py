"""``create_app``: routes, plugins, the error mapping and the lifespan in one place."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from http import HTTPStatus
from typing import Any

from advanced_alchemy.exceptions import IntegrityError as RowConflictError
from advanced_alchemy.exceptions import NotFoundError as RowNotFoundError
from advanced_alchemy.exceptions import RepositoryError
from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar, Request, Response
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.exceptions import HTTPException, ValidationException
from litestar.middleware.base import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)
from litestar.stores.redis import RedisStore
from litestar.stores.registry import StoreRegistry
from litestar.types import LifeSpanReceive, LifeSpanScope, LifeSpanSend, Receive, Scope, Send
from redis.asyncio import Redis

from naboom.audit.controller import AuditController
from naboom.background.broker import open_work
from naboom.background.controller import BackgroundController
from naboom.background.scheduler import SchedulerState, run_scheduler
from naboom.coverage.controller import CoverageController
from naboom.db.config import database_config
from naboom.devices.controller import DeviceController
from naboom.errors import NaboomError
from naboom.escalation.controller import EscalationRuleController
from naboom.incidents.controller import IncidentController
from naboom.ingest.controller import IngestAdminController, SubmitController
from naboom.ingest.embedded_broker import embedded_broker
from naboom.ingest.mqtt import MqttIngest
from naboom.ingest.pipeline import IngestPipeline
from naboom.ingest.service import IngestPolicy, IngestService
from naboom.logs import RequestIdMiddleware
from naboom.middleware import AllowedHostsMiddleware
from naboom.monitor.controller import monitor, root
from naboom.notify.controller import ContactController, SmsController
from naboom.openapi import StrictSchemaPlugin, document_problems
from naboom.operations.health import health
from naboom.operations.metrics import metrics
from naboom.outbox.bridge import OutboxBridge
from naboom.outbox.controller import WebhookController
from naboom.realtime.controller import SERVER_SEND, alerts_socket, stream
from naboom.realtime.feed import make_feed
from naboom.regions.controller import RegionController
from naboom.retention.controller import RetentionController
from naboom.settings import Settings, get_settings
from naboom.telemetry.subscriber import TelemetrySubscriber
from naboom.users.admin_controller import UserAdminController
from naboom.users.auth import CSRF_HEADER, SESSION_COOKIE, TokenAuthMiddleware, TokenCodec
from naboom.users.controller import AuthController
from naboom.vehicles.controller import VehicleController, VehiclePingController
from naboom.vehicles.ratelimit import ping_bucket

log = logging.getLogger(__name__)

# Paths anyone may reach; everything else needs a token.
PUBLIC_PATHS = [
    "^/api/auth/login$",
    "^/panic/api/submit$",
    # vehicles authenticate with their own token, checked by the ping handler
    "^/panic/api/vehicle/ping$",
    # the SMS gateway authenticates with the shared callback secret, checked by the handler's guard
    "^/api/sms/callback$",
    "^/schema",
    "^/monitoring/",
    # open unless NABOOM_METRICS_TOKEN is set; the handler checks that bearer token itself
    "^/metrics$",
    "^/monitor",
    # the front page only redirects to the monitor
    "^/$",
]


def _problem(exc: NaboomError) -> ProblemDetailsException:
    return ProblemDetailsException(
        status_code=exc.status_code, title=exc.title, detail=exc.detail, extra=exc.extra or None, headers=exc.headers
    )


def _http_problem(exc: HTTPException) -> ProblemDetailsException:
    extra: dict[str, Any] | None = None
    if isinstance(exc, ValidationException) and exc.extra:
        extra = {"errors": exc.extra}
    return ProblemDetailsException(
        status_code=exc.status_code,
        title=HTTPStatus(exc.status_code).phrase,
        detail=exc.detail,
        headers=exc.headers,
        extra=extra,
    )


def _repository_problem(exc: RepositoryError) -> ProblemDetailsException:
    # A unique key that a concurrent request took between our check and our insert, or a row
    # that vanished: the same answers the services give when they see it first.
    if isinstance(exc, RowConflictError):
        return ProblemDetailsException(status_code=409, title="Conflict", detail="this conflicts with a record that already exists")
    if isinstance(exc, RowNotFoundError):
        return ProblemDetailsException(status_code=404, title="Not found", detail="no such record")
    log.error("database error", exc_info=exc)
    return ProblemDetailsException(
        status_code=500, title="Internal Server Error", detail="an unexpected error was logged; try again"
    )


def _internal_error(request: Request, exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return Response(
        {"status": 500, "title": "Internal Server Error", "detail": "an unexpected error was logged; try again"},
        status_code=500,
        media_type="application/problem+json",
    )


class NaboomApp(Litestar):
    """Litestar, keeping the server's own ``send`` in the scope for the live feed's frames."""

    async def __call__(
        self, scope: Scope | LifeSpanScope, receive: Receive | LifeSpanReceive, send: Send | LifeSpanSend
    ) -> None:
        """Serve one connection."""
        scope[SERVER_SEND] = send  # type: ignore[literal-required]
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, run_ingest: bool = True) -> Litestar:
    """The whole API; ``run_ingest`` also starts the MQTT ingest (and the embedded broker by default)."""
    settings = settings or get_settings()
    db = database_config(settings)
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    channels, feed = make_feed(settings, redis)
    stores = (
        StoreRegistry(default_factory=lambda name: RedisStore(redis, namespace=f"{settings.redis_prefix}:{name}"))
        if redis is not None
        else StoreRegistry()
    )
    # Built here: with Redis it registers its script once, not on every ping.
    vehicle_pings = ping_bucket(settings, redis, stores)
    policy = IngestPolicy(
        dedup_window=timedelta(seconds=settings.dedup_window_seconds),
        future_skew=timedelta(seconds=settings.future_skew_seconds),
        rejection_log_max_rows=settings.rejection_log_max_rows,
        topic_prefix=settings.mqtt_topic_prefix,
        sos_attach_window=timedelta(seconds=settings.sos_attach_window_seconds),
    )
    # On PostgreSQL big batches are stored in two lanes side by side (SQLite has one writer).
    lanes = 1 if settings.embedded_database else 2
    pipeline = IngestPipeline(db.get_session, IngestService(policy), feed, lanes=lanes)
    mqtt = MqttIngest(settings, pipeline) if run_ingest else None
    # Outbound MQTT (device acks, region alerts) from the outbox; `naboom bridge` runs it alone.
    bridge = OutboxBridge(settings, db) if run_ingest and settings.bridge_enabled else None

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if redis is not None:
                stack.push_async_callback(redis.aclose)
            stack.push_async_callback(feed.aclose)
            # Tasks are queued from here; on embedded defaults they also run here, and this
            # process is the scheduler (with Redis, `naboom worker` and `naboom scheduler` do).
            work = await stack.enter_async_context(open_work(settings, db=db, feed=feed, redis=redis))
            app.state.work = work
            pipeline.tasks = work.tasks
            if redis is None and run_ingest:
                scheduling = asyncio.create_task(run_scheduler(work, app.state.scheduler), name="scheduler")
                stack.push_async_callback(_cancel, scheduling)
            if mqtt is not None:
                if settings.embedded_mqtt:
                    await stack.enter_async_context(embedded_broker(settings))
                if bridge is not None:
                    # Registered before the ingest, so it stops after it: acks the ingest commits last still go out.
                    bridge.start()
                    stack.push_async_callback(bridge.stop, settings.shutdown_timeout_seconds)
                # Device telemetry has its own small subscription (latest-wins, no manual acks).
                telemetry = asyncio.create_task(TelemetrySubscriber(settings, db.get_session).run(), name="telemetry")
                stack.push_async_callback(_cancel, telemetry)
                task = asyncio.create_task(mqtt.run(), name="mqtt-ingest")
                # On shutdown the ingest stops taking messages and acknowledges what it holds,
                # within the bound; what unwinds after it (the broker, the bridge) is still up.
                stack.push_async_callback(mqtt.shutdown, task, settings.shutdown_timeout_seconds)
            yield

    app = NaboomApp(
        route_handlers=[
            AuthController,
            AuditController,
            RegionController,
            UserAdminController,
            VehicleController,
            VehiclePingController,
            IncidentController,
            DeviceController,
            SubmitController,
            IngestAdminController,
            BackgroundController,
            ContactController,
            SmsController,
            RetentionController,
            CoverageController,
            EscalationRuleController,
            WebhookController,
            stream,
            alerts_socket,
            health,
            metrics,
            monitor,
            root,
        ],
        plugins=[
            SQLAlchemyPlugin(config=db),
            channels,
            ProblemDetailsPlugin(
                ProblemDetailsConfig(
                    exception_to_problem_detail_map={
                        NaboomError: _problem,
                        HTTPException: _http_problem,
                        RepositoryError: _repository_problem,
                    }
                )
            ),
            StrictSchemaPlugin(),
        ],
        middleware=[
            # OPTIONS too: CORS answers preflights before routing; any other OPTIONS reaches the
            # route's guards, which need to know who asks.
            DefineMiddleware(TokenAuthMiddleware, exclude=PUBLIC_PATHS, exclude_http_methods=()),
        ],
        exception_handlers={Exception: _internal_error},
        cors_config=CORSConfig(
            allow_origins=list(settings.allowed_origins),
            allow_credentials=True,
            allow_headers=["Authorization", "Content-Type", "X-CSRF-Token", "Last-Event-ID"],
        ),
        stores=stores,
        openapi_config=OpenAPIConfig(
            title="Naboom NeighborNet",
            version="0.1.0",
            path="/schema",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT"),
                    "session": SecurityScheme(
                        type="apiKey",
                        name=SESSION_COOKIE,
                        security_scheme_in="cookie",
                        description=f"The browser's session; unsafe methods also need the {CSRF_HEADER} header",
                    ),
                }
            ),
        ),
        lifespan=[lifespan],
        state=State(
            {
                "settings": settings,
                "db": db,
                "tokens": TokenCodec(settings),
                "feed": feed,
                "ingest": pipeline,
                "mqtt": mqtt,
                "bridge": bridge,
                "scheduler": SchedulerState(),
                "ping_bucket": vehicle_pings,
            }
        ),
    )
    document_problems(app, PUBLIC_PATHS)
    # In front of routing (and CORS): a foreign Host is refused before anything else is decided.
    app.asgi_handler = AllowedHostsMiddleware(app.asgi_handler, settings.allowed_hosts)
    # Outermost: even a refused request gets an id on its log lines and in its response.
    app.asgi_handler = RequestIdMiddleware(app.asgi_handler)
    return app


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
