"""``/api/vehicles`` (operators, viewers and admins) and ``/panic/api/vehicle/ping`` (vehicles)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated

import msgspec
from litestar import Controller, Request, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.db.config import connection_session
from naboom.errors import NaboomError
from naboom.openapi import problems
from naboom.realtime.feed import LiveFeed
from naboom.schemas import Limit, Offset, Page
from naboom.settings import Settings
from naboom.users.auth import AuthRequest
from naboom.users.guards import admin_only
from naboom.vehicles.ratelimit import TokenBucket
from naboom.vehicles.schemas import (
    PingAccepted,
    PingIn,
    PingOut,
    VehicleCreate,
    VehicleCredentials,
    VehicleOut,
)
from naboom.vehicles.service import InvalidPingError, PingingVehicle, VehicleService

_ping_decoder = msgspec.json.Decoder(PingIn)


async def vehicle_token(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Authenticate the pinging vehicle by its own token, then take one token from its rate bucket."""
    header = connection.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else None
    async with connection_session(connection) as session:
        vehicle = await VehicleService(session=session).authenticate(token)
    bucket: TokenBucket = connection.app.state.ping_bucket
    await bucket.take(str(vehicle.id))
    connection.state.vehicle = vehicle


async def strict_ping_body(request: Request) -> None:
    """Refuse what the strict decoder refuses, before Litestar's lenient one (strings as numbers) runs."""
    try:
        _ping_decoder.decode(await request.body())
    except msgspec.ValidationError as exc:
        raise InvalidPingError(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise NaboomError(f"the body is not valid JSON: {exc}") from None


class VehicleController(Controller):
    """Patrol vehicles: everyone reads those of their regions; admins register and manage them."""

    path = "/api/vehicles"
    tags = ["vehicles"]

    @get("/")
    async def list_vehicles(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        region: Annotated[str | None, QueryParameter(max_length=32)] = None,
        active: Annotated[bool | None, QueryParameter(description="Only active (or inactive) vehicles")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[VehicleOut]:
        """Vehicles by callsign with their latest positions."""
        return await VehicleService(session=db_session).page(
            request.user, region=region, active=active, limit=limit, offset=offset
        )

    @post("/", guards=[admin_only], responses=problems(409, why={409: "The callsign is taken"}))
    async def register_vehicle(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], data: JSONBody[VehicleCreate]
    ) -> VehicleCredentials:
        """Register a vehicle; the answer holds its token, shown only this once."""
        return await VehicleService(session=db_session).register(request.user, data)

    @get("/{vehicle_id:uuid}")
    async def get_vehicle(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], vehicle_id: FromPath[uuid.UUID]
    ) -> VehicleOut:
        """One vehicle and its latest position."""
        return await VehicleService(session=db_session).detail(request.user, vehicle_id)

    @get("/{vehicle_id:uuid}/trail")
    async def get_trail(
        self,
        request: AuthRequest,
        db_session: NamedDependency[AsyncSession],
        vehicle_id: FromPath[uuid.UUID],
        since: Annotated[datetime | None, QueryParameter(description="Pings with ts at or after (ISO 8601)")] = None,
        until: Annotated[datetime | None, QueryParameter(description="Pings with ts before (ISO 8601)")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        offset: Offset = 0,
    ) -> Page[PingOut]:
        """The vehicle's pings, oldest first (including those that arrived out of order)."""
        return await VehicleService(session=db_session).trail(
            request.user, vehicle_id, since=since, until=until, limit=limit, offset=offset
        )

    @post("/{vehicle_id:uuid}/token", guards=[admin_only], status_code=201)
    async def rotate_token(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], vehicle_id: FromPath[uuid.UUID]
    ) -> VehicleCredentials:
        """A new token, shown only this once; the old one stops working at once."""
        return await VehicleService(session=db_session).rotate_token(request.user, vehicle_id)

    @post("/{vehicle_id:uuid}/deactivate", guards=[admin_only], status_code=200)
    async def deactivate(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], vehicle_id: FromPath[uuid.UUID]
    ) -> VehicleOut:
        """Refuse the vehicle's pings and never suggest it for dispatch."""
        return await VehicleService(session=db_session).set_active(request.user, vehicle_id, active=False)

    @post("/{vehicle_id:uuid}/activate", guards=[admin_only], status_code=200)
    async def activate(
        self, request: AuthRequest, db_session: NamedDependency[AsyncSession], vehicle_id: FromPath[uuid.UUID]
    ) -> VehicleOut:
        """Accept the vehicle's pings again (with its current token)."""
        return await VehicleService(session=db_session).set_active(request.user, vehicle_id, active=True)


class VehiclePingController(Controller):
    """Position pings from patrol vehicles, authenticated by the vehicle's own token."""

    path = "/panic/api/vehicle"
    tags = ["vehicles"]

    @post(
        "/ping",
        status_code=202,
        exclude_from_auth=True,
        guards=[vehicle_token],
        before_request=strict_ping_body,
        responses=problems(
            400,
            401,
            422,
            429,
            why={
                400: "The body is not JSON",
                401: "Missing, unknown or deactivated vehicle token (`Authorization: Bearer <vehicle token>`)",
                422: "The ping breaks the schema (`detail` names the field), or its ts is too far ahead or too old",
                429: "The vehicle's bucket is empty (30 a minute, bursts of 10): wait for `Retry-After` seconds",
            },
        ),
    )
    async def ping(
        self, request: Request, db_session: NamedDependency[AsyncSession], data: JSONBody[PingIn]
    ) -> PingAccepted:
        """One position of the vehicle holding the Bearer token (30 a minute, bursts of 10).

        Stored in the trail; if it is the vehicle's newest it becomes the latest position and is
        broadcast as ``vehicle.position`` to the region's live feed.
        """
        vehicle: PingingVehicle = request.state.vehicle
        settings: Settings = request.app.state.settings
        position = await VehicleService(session=db_session).record_ping(
            vehicle, data, max_future=timedelta(seconds=settings.future_skew_seconds)
        )
        await db_session.commit()  # the boundary: broadcast only what is stored
        if position is not None:
            feed: LiveFeed = request.app.state.feed
            await feed.publish(vehicle.region, "vehicle.position", position.event_data())
        return PingAccepted()
