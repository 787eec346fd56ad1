"""Clients of the live feed for tests: SSE and WebSocket, collecting events in the background."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from websockets.exceptions import InvalidStatus


@asynccontextmanager
async def open_stream(
    base_url: str,
    token: str | None,
    region: str,
    *,
    token_in_query: bool = False,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[httpx.Response]:
    """``GET /panic/api/stream`` of ``region`` as a raw httpx streaming response, open for the block.

    The token goes in ``Authorization: Bearer`` (or as ``?token=`` with ``token_in_query``; none
    with ``token=None``); ``headers`` are sent as well.
    """
    params = {"region": region}
    sent: dict[str, str] = {}
    if token is not None and token_in_query:
        params["token"] = token
    elif token is not None:
        sent["Authorization"] = f"Bearer {token}"
    sent.update(headers or {})
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=None) as client,
        client.stream("GET", "/panic/api/stream", params=params, headers=sent) as response,
    ):
        yield response


@dataclass
class SseClient:
    """Reads ``/panic/api/stream`` and keeps every event with its id.

    ``token=None`` connects without credentials; ``token_in_query`` sends it as ``?token=`` the
    way a browser's ``EventSource`` must. A refused stream keeps its ``status``,
    ``content_type`` and (for problem details) the decoded ``problem``.
    """

    base_url: str
    token: str | None
    region: str
    last_event_id: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    status: int | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    token_in_query: bool = False
    comments: list[str] = field(default_factory=list)
    content_type: str | None = None
    problem: dict[str, Any] | None = None

    async def _run(self) -> None:
        headers = {} if self.last_event_id is None else {"Last-Event-ID": str(self.last_event_id)}
        async with open_stream(
            self.base_url, self.token, self.region, token_in_query=self.token_in_query, headers=headers
        ) as response:
            self.status = response.status_code
            self.content_type = response.headers.get("content-type")
            if response.status_code != 200:
                body = await response.aread()
                if self.content_type and self.content_type.startswith("application/problem+json"):
                    self.problem = json.loads(body)
                self.connected.set()
                return
            frame: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line.startswith(":"):
                    self.comments.append(line)
                    if line.startswith(": connected"):
                        self.connected.set()
                elif line == "":
                    if "data" in frame:
                        self.events.append(
                            {
                                "id": int(frame["id"]) if "id" in frame else None,
                                "event": frame.get("event"),
                                "data": json.loads(frame["data"]),
                            }
                        )
                    frame = {}
                else:
                    key, _, value = line.partition(":")
                    frame[key] = value.lstrip()

    async def __aenter__(self) -> SseClient:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.connected.wait(), 20)
        if self._task.done():
            self._task.result()  # surface a connection error instead of hiding it
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def incidents(self, type_: str = "incident.created") -> list[dict[str, Any]]:
        """The data of every event of ``type_``."""
        return [e["data"] for e in self.events if e["event"] == type_]

    def ids(self) -> list[int]:
        """The SSE ``id:`` of every event received, in arrival order."""
        return [e["id"] for e in self.events]


@dataclass
class WsClient:
    """Reads ``/ws/alerts/{region}/`` and keeps every message."""

    base_url: str
    token: str
    region: str
    origin: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _ws: Any = None

    async def __aenter__(self) -> WsClient:
        url = self.base_url.replace("http://", "ws://") + f"/ws/alerts/{self.region}/?token={self.token}"
        headers = {"Origin": self.origin} if self.origin else None
        self._ws = await websockets.connect(url, additional_headers=headers, open_timeout=20)
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        async for message in self._ws:
            self.events.append(json.loads(message))

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._ws.close()

    def incidents(self, type_: str = "incident.created") -> list[dict[str, Any]]:
        """Every message of ``type_``."""
        return [e for e in self.events if e.get("type") == type_]


async def ws_handshake(base_url: str, region: str, *, token: str | None, origin: str | None) -> int:
    """Open ``/ws/alerts/{region}/`` once: 101 if the server completed the handshake, else its HTTP status.

    An accepted socket is closed again at once; tests that need it to carry events use
    :class:`WsClient`.
    """
    url = base_url.replace("http://", "ws://") + f"/ws/alerts/{region}/"
    if token is not None:
        url += f"?token={token}"
    headers = {"Origin": origin} if origin else None
    try:
        async with websockets.connect(url, additional_headers=headers, open_timeout=20):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code
