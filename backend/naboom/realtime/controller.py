"""Live events for operators: Server-Sent Events and WebSockets, one region per connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Annotated

from litestar import get, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.response import Stream

from naboom.errors import NaboomError, NotFoundError
from naboom.openapi import problems
from naboom.operations.instruments import LIVE_CONNECTIONS
from naboom.realtime.feed import LiveFeed
from naboom.settings import Settings
from naboom.users.auth import AuthRequest, AuthSocket, Principal

_RESET = b'{"type":"stream.reset","detail":"events were missed beyond the replay history; reload the incident list"}'


def _parse_last_id(*values: str | None) -> int | None:
    for value in values:
        if value:
            try:
                return int(value)
            except ValueError:
                raise NaboomError(f"Last-Event-ID must be an integer event id, got {value!r}") from None
    return None


def _check_region(principal: Principal, region: str) -> None:
    if not principal.can_see(region):
        raise NotFoundError(f"no live feed for region {region!r}")


@get(
    "/panic/api/stream",
    tags=["live"],
    media_type="text/event-stream",
    responses=problems(404, why={404: "No live feed of that region for the caller (not one of their regions)"}),
)
async def stream(
    request: AuthRequest,
    region: Annotated[str, QueryParameter(min_length=1, max_length=32, description="Region code, e.g. ZA-LP")],
    last_event_id_header: Annotated[str | None, HeaderParameter(name="Last-Event-ID")] = None,
    last_event_id: Annotated[str | None, QueryParameter(name="lastEventId")] = None,
) -> Stream:
    """Server-Sent Events of one region; reconnect with ``Last-Event-ID`` to receive what was missed."""
    _check_region(request.user, region)
    after = _parse_last_id(last_event_id_header, last_event_id)
    feed: LiveFeed = request.app.state.feed
    settings: Settings = request.app.state.settings

    async def frames() -> AsyncGenerator[bytes, None]:
        with LIVE_CONNECTIONS.labels("sse").track_inprogress():
            async with feed.subscribe(region, after) as replay:
                yield b"retry: 3000\n: connected\n\n"
                if replay.gap:
                    yield b"event: stream.reset\ndata: %s\n\n" % _RESET
                async for event in replay.events(settings.sse_heartbeat_seconds):
                    yield b": keep-alive\n\n" if event is None else event.sse

    return Stream(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@websocket("/ws/alerts/{region:str}/", tags=["live"])
async def alerts_socket(socket: AuthSocket, region: FromPath[str]) -> None:
    """The same events over a WebSocket; ``?last_event_id=`` replays like SSE."""
    settings: Settings = socket.app.state.settings
    origin = socket.headers.get("origin")
    if origin is not None and origin not in settings.allowed_origins:
        await socket.close(code=1008, reason="origin not allowed")
        return
    if not socket.user.can_see(region):
        await socket.close(code=4404, reason="no live feed for this region")
        return
    after = _parse_last_id(socket.query_params.get("last_event_id"))
    feed: LiveFeed = socket.app.state.feed
    await socket.accept()

    async def drain_incoming() -> None:
        # Clients have nothing to say; reading is how a closed socket is noticed.
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await socket.receive_data(mode="text")

    reader = asyncio.create_task(drain_incoming())
    try:
        with LIVE_CONNECTIONS.labels("ws").track_inprogress():
            async with feed.subscribe(region, after) as replay:
                if replay.gap:
                    await socket.send_data(_RESET.decode())
                async for event in replay.events(settings.sse_heartbeat_seconds):
                    if reader.done():
                        break
                    if event is not None:
                        await socket.send_data(event.text)
    except WebSocketDisconnect:
        pass
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
