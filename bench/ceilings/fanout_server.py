#!/usr/bin/env python
"""The fan-out ceiling: a bare asyncio server that writes one prepared frame to every client.

It speaks just enough HTTP for the fan-out benchmark's clients to connect to it exactly as they
connect to ``naboom serve``: a ``GET /ws/...`` request gets a WebSocket ``101`` handshake, any
other request a chunked ``200 text/event-stream`` answer with the ``: connected`` greeting. After
that it never reads from the client sockets again (pings are not sent, so none need answering).

A control connection (``--control-port``) drives it, one command at a time::

    FIRE <n>\\n<n bytes of SSE frame>   write the frame to every client: SSE clients get it as
                                        one chunk, WebSocket clients as one text frame carrying
                                        the frame's ``data:`` JSON; both encodings are built once
    → <monotonic ns just before the first write> <clients written>\\n

The benchmark stamps latency from that instant, so the number is the floor a Python server on
this loop can reach: no broker, no queue, no per-client work but ``transport.write``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import resource
import struct
import sys
import time
from typing import cast

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
GREETING = b"retry: 3000\n: connected\n\n"


def raise_nofile() -> None:
    """Thousands of sockets need thousands of descriptors: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def ws_text_frame(payload: bytes) -> bytes:
    """An unmasked (server to client) WebSocket text frame."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + payload


def sse_data(frame: bytes) -> bytes:
    """The ``data:`` line's JSON of one SSE frame (what the WebSocket carries for the same event)."""
    for line in frame.split(b"\n"):
        if line.startswith(b"data: "):
            return line[6:]
    raise ValueError("the frame has no data line")


class Clients:
    """The connected clients' transports, by kind."""

    def __init__(self) -> None:
        self.sse: list[asyncio.Transport] = []
        self.ws: list[asyncio.Transport] = []

    def fire(self, frame: bytes) -> tuple[int, int]:
        """Write ``frame`` to everyone; returns the start instant and how many were written to."""
        as_chunk, as_ws = chunk(frame), ws_text_frame(sse_data(frame))
        start = time.monotonic_ns()
        written = 0
        for transport in self.sse:
            if not transport.is_closing():
                transport.write(as_chunk)
                written += 1
        for transport in self.ws:
            if not transport.is_closing():
                transport.write(as_ws)
                written += 1
        return start, written


class ClientProtocol(asyncio.Protocol):
    """Reads the request head, answers it, then only writes."""

    def __init__(self, clients: Clients) -> None:
        self.clients = clients
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are no asyncio.Transport subclasses, but they are transports.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.answered:
            return  # pongs, masked client frames: nothing to do
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head, self.buffer = self.buffer[:end], b""
        self.answered = True
        assert self.transport is not None
        if head.startswith(b"GET /ws/"):
            key = b""
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-key":
                    key = value.strip()
            accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: %s\r\n\r\n" % accept
            )
            self.clients.ws.append(self.transport)
        else:
            self.transport.write(SSE_HEAD + chunk(GREETING))
            self.clients.sse.append(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        for group in (self.clients.sse, self.clients.ws):
            if self.transport in group:
                group.remove(self.transport)


async def control(clients: Clients, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Serve ``FIRE`` commands until the controller hangs up."""
    while line := await reader.readline():
        verb, _, size = line.decode().strip().partition(" ")
        if verb != "FIRE":
            writer.write(b"ERR unknown command\n")
            continue
        frame = await reader.readexactly(int(size))
        start, written = clients.fire(frame)
        writer.write(b"%d %d\n" % (start, written))
        await writer.drain()
    writer.close()


async def serve(port: int, control_port: int) -> None:
    """Listen for clients and for the controller; print ``ready`` once both listen."""
    loop = asyncio.get_running_loop()
    clients = Clients()
    server = await loop.create_server(lambda: ClientProtocol(clients), "127.0.0.1", port, backlog=4096)
    ctl = await asyncio.start_server(lambda r, w: control(clients, r, w), "127.0.0.1", control_port)
    print("ready", flush=True)
    async with server, ctl:
        await asyncio.Event().wait()  # until SIGTERM


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True, help="where clients connect")
    parser.add_argument("--control-port", type=int, required=True, help="where the benchmark sends FIRE")
    args = parser.parse_args()
    raise_nofile()
    try:
        import uvloop

        uvloop.run(serve(args.port, args.control_port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
