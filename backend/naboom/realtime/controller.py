"""Live events for operators: Server-Sent Events and WebSockets, one region per connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Annotated, cast

from litestar import get, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.response import Stream
from litestar.types import HTTPResponseBodyEvent, Scope, Send

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


# Where the app puts the server's own ``send`` (``NaboomApp``). Live frames go through it: the
# send hooks and middlewares in front of a handler's ``send`` act on a response's start, which
# goes through them as usual, and would only look at each of the thousands of frames of a
# broadcast. Absent (an app called without NaboomApp), the handler's ``send`` serves.
SERVER_SEND = "naboom.server_send"

_KEEP_ALIVE: HTTPResponseBodyEvent = {
    "type": "http.response.body",
    "body": b": keep-alive\n\n",
    "more_body": True,
}


def _server_send(scope: Scope, fallback: Send) -> Send:
    return cast(Send, scope.get(SERVER_SEND, fallback))


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
                for event in replay.missed:
                    yield event.sse
                # The response has started (the stream sends each chunk before asking for the
                # next): live frames go straight to the server until the feed ends this stream
                # (shutdown, a client far behind) or the client leaves (the stream cancels us).
                send = _server_send(request.scope, request.send)
                await replay.go_live(
                    lambda event: send(event.http_body),
                    lambda: send(_KEEP_ALIVE),
                    settings.sse_heartbeat_seconds,
                )

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
        with feed.connection(), LIVE_CONNECTIONS.labels("ws").track_inprogress():
            async with feed.subscribe(region, after) as replay:
                if replay.gap:
                    await socket.send_data(_RESET.decode())
                for event in replay.missed:
                    await socket.send_data(event.text)
                send = _server_send(socket.scope, socket.send)
                ended = replay.go_live(lambda event: send(event.ws_send))
                await asyncio.wait([reader, ended], return_when=asyncio.FIRST_COMPLETED)
            if not reader.done():
                # The feed ended this connection (shutdown, or a client far behind): say so, the
                # client reconnects with its last event id.
                with contextlib.suppress(WebSocketDisconnect):
                    await socket.close(code=1012, reason="reconnect")
    except WebSocketDisconnect:
        pass
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
