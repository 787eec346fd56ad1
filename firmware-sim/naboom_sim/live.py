"""A reader of the region's Server-Sent Events feed (``/panic/api/stream``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

STREAM_PATH = "/panic/api/stream"


@dataclass(frozen=True)
class Event:
    """One SSE frame: its ``event:`` type and decoded ``data:`` JSON."""

    type: str
    data: dict[str, Any]


async def frames(response: httpx.Response) -> AsyncIterator[Event | None]:
    """Events of an open stream; ``None`` for the server's ``: connected`` hello (the subscription is live)."""
    kind, data = "message", list[str]()
    async for line in response.aiter_lines():
        if line.startswith(":"):
            if line.startswith(": connected"):
                yield None
            continue
        if line == "":
            if data:
                try:
                    decoded = json.loads("\n".join(data))
                except ValueError:
                    decoded = None
                if isinstance(decoded, dict):
                    yield Event(kind, decoded)
            kind, data = "message", []
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            kind = value
        elif field == "data":
            data.append(value)


@asynccontextmanager
async def subscribed(
    client: httpx.AsyncClient, region: str, token: str
) -> AsyncIterator[AsyncIterator[Event]]:
    """Open the region's feed and return once the server says the subscription is live."""
    async with client.stream(
        "GET",
        STREAM_PATH,
        params={"region": region, "token": token},
        headers={"Accept": "text/event-stream"},
        timeout=httpx.Timeout(30.0, read=None),
    ) as response:
        if response.status_code != 200:
            await response.aread()
            raise httpx.HTTPStatusError(
                f"the live feed answered {response.status_code}: {response.text[:200]}",
                request=response.request,
                response=response,
            )
        stream = frames(response)
        first = await asyncio.wait_for(anext(stream), 30)
        if first is not None:
            raise RuntimeError(f"the live feed did not greet first; got {first}")

        async def events() -> AsyncIterator[Event]:
            async for event in stream:
                if event is not None:
                    yield event

        yield events()
