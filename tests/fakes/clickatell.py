"""A fake Clickatell Platform gateway: a real HTTP server on a free port, scripted per recipient.

It speaks the Platform REST API's shapes: ``POST /v1/message`` with the API key in
``Authorization`` and ``{"messages": [{"channel", "to", "content", "clientMessageId"}]}``,
answered ``202 {"messages": [{"apiMessageId", "accepted", "to", "error"}], "error": null}``;
errors as ``{"error": {"code", "description"}}`` (global) or per message. It can also post a
delivery-status callback the way Clickatell does.

Each recipient has a script of actions, used one per request (then :attr:`default`): accept,
fail with a status, refuse the number (4xx), or hold the request until :meth:`release` — a
held request whose client disconnects (a timeout, a killed worker) is dropped and never
counts as sent. Only accepted requests are "SMS the recipient got".

The server runs on its own event loop in a thread, so tests may block (sync HTTP clients,
subprocesses) without stalling it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

ACCEPT = "accept"
HOLD = "hold"


@dataclass(frozen=True)
class Fail:
    """Answer ``status`` (5xx, 429, 401…) with a global error body."""

    status: int = 503
    code: int = 19
    description: str = "Internal error, please retry"


@dataclass(frozen=True)
class Refuse:
    """Refuse the number for good: 400 with a message-level error (Clickatell's "invalid recipient")."""

    code: int = 25
    description: str = "Invalid recipient address"


Action = str | Fail | Refuse


@dataclass
class Request:
    """One request the gateway read, and what it did with it."""

    to: str
    content: str
    client_message_id: str | None
    action: str
    api_message_id: str | None = None


@dataclass
class _Held:
    to: str
    release: asyncio.Event


@dataclass
class FakeClickatell:
    """The gateway. ``start()`` it, point ``NABOOM_CLICKATELL_URL`` at :attr:`url`, script, observe."""

    api_key: str = field(default_factory=lambda: f"test-key-{uuid.uuid4().hex}")
    default: Action = ACCEPT
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    dropped: list[Request] = field(default_factory=list)
    _scripts: dict[str, list[Action]] = field(default_factory=dict)
    _held: list[_Held] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None

    # Lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeClickatell:
        """Listen on a free port of 127.0.0.1 (in a background thread)."""
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)

            async def serve() -> None:
                self._server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)
                self.port = self._server.sockets[0].getsockname()[1]
                ready.set()

            loop.run_until_complete(serve())
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="fake-clickatell", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake Clickatell gateway did not start")
        return self

    def stop(self) -> None:
        """Close the server and its thread."""
        if self._loop is None:
            return
        loop = self._loop

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for held in self._held:
                held.release.set()

        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    @property
    def url(self) -> str:
        """The base URL (``NABOOM_CLICKATELL_URL``)."""
        return f"http://127.0.0.1:{self.port}"

    # Scripting ------------------------------------------------------------------------------

    def script(self, to: str, *actions: Action) -> None:
        """The next requests for ``to`` get ``actions`` in order, then :attr:`default`."""
        with self._lock:
            self._scripts[_digits(to)] = list(actions)

    def release(self, to: str | None = None) -> None:
        """Let held requests (of ``to``, or all) go on: they are accepted."""
        assert self._loop is not None
        with self._lock:
            held = [h for h in self._held if to is None or h.to == _digits(to)]
        for h in held:
            self._loop.call_soon_threadsafe(h.release.set)

    # Observing ------------------------------------------------------------------------------

    def accepted(self, to: str | None = None) -> list[Request]:
        """Requests answered "accepted": the SMS the recipient (``to``, or anyone) got."""
        with self._lock:
            return [r for r in self.requests if r.action == ACCEPT and (to is None or r.to == _digits(to))]

    def received(self, to: str | None = None) -> list[Request]:
        """Every request read (accepted, failed, refused, held or dropped)."""
        with self._lock:
            return [r for r in self.requests if to is None or r.to == _digits(to)]

    def holding(self, to: str | None = None) -> int:
        """How many requests are held right now."""
        with self._lock:
            return sum(1 for h in self._held if to is None or h.to == _digits(to))

    def dropped_for(self, to: str) -> list[Request]:
        """Held requests whose client went away before an answer."""
        with self._lock:
            return [r for r in self.dropped if r.to == _digits(to)]

    # Callbacks ------------------------------------------------------------------------------

    def callback_body(
        self,
        api_message_id: str | None,
        *,
        status_code: int | str = 4,
        status: str | None = "RECEIVED_BY_RECIPIENT",
        description: str = "Received by recipient",
        client_message_id: str | None = None,
        to: str | None = None,
    ) -> dict[str, Any]:
        """A status callback as Clickatell's Platform posts it."""
        body: dict[str, Any] = {
            "integrationName": "naboom-test",
            "messageId": api_message_id,
            "requestId": uuid.uuid4().hex,
            "clientMessageId": client_message_id,
            "to": _digits(to) if to else None,
            "from": None,
            "statusCode": status_code,
            "status": status,
            "statusDescription": description,
            "timestamp": 1_700_000_000_000,
        }
        return {k: v for k, v in body.items() if v is not None}

    def post_callback(
        self, url: str, body: dict[str, Any] | bytes, *, secret: str | None, basic: bool = False
    ) -> httpx.Response:
        """POST ``body`` to ``url`` with the secret in ``X-Callback-Secret`` (or as the Basic password)."""
        headers = {"Content-Type": "application/json"}
        if secret is not None and basic:
            headers["Authorization"] = "Basic " + base64.b64encode(f"clickatell:{secret}".encode()).decode()
        elif secret is not None:
            headers["X-Callback-Secret"] = secret
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(url, content=content, headers=headers, timeout=30)

    # The server -----------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection is done."""
        line = await reader.readline()
        if not line:
            return False
        method, path, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if method != "POST" or path != "/v1/message":
            await _respond(writer, 404, {"error": {"code": 41, "description": "Resource does not exist"}})
            return True
        if headers.get("authorization") != self.api_key:
            await _respond(writer, 401, {"error": {"code": 1, "description": "Invalid or missing Integration API Key"}})
            return True
        try:
            message = json.loads(body)["messages"][0]
            to, content = str(message["to"]), str(message["content"])
        except (ValueError, KeyError, IndexError, TypeError):
            await _respond(writer, 400, {"error": {"code": 21, "description": "Payload data is malformed"}})
            return True
        with self._lock:
            script = self._scripts.get(to)
            action = script.pop(0) if script else self.default
            request = Request(to, content, message.get("clientMessageId"), _name(action))
            self.requests.append(request)
        if action == HOLD:
            held = _Held(to, asyncio.Event())
            with self._lock:
                self._held.append(held)
            try:
                released = await _released_or_gone(held.release, reader)
            finally:
                with self._lock:
                    self._held.remove(held)
            if not released:
                with self._lock:
                    request.action = "dropped"
                    self.dropped.append(request)
                return False
            action = ACCEPT
        if isinstance(action, Fail):
            await _respond(writer, action.status, {"messages": [], "error": {"code": action.code, "description": action.description}})
        elif isinstance(action, Refuse):
            error = {"code": action.code, "description": f"{action.description}: {to}"}
            await _respond(writer, 400, {"messages": [{"apiMessageId": None, "accepted": False, "to": to, "error": error}], "error": None})
        else:
            api_id = uuid.uuid4().hex
            with self._lock:
                request.action = ACCEPT
                request.api_message_id = api_id
            await _respond(writer, 202, {"messages": [{"apiMessageId": api_id, "accepted": True, "to": to, "error": None}], "error": None})
        return True


async def _released_or_gone(release: asyncio.Event, reader: asyncio.StreamReader) -> bool:
    """Wait until released (True) or until the client closes the connection (False)."""
    released = asyncio.create_task(release.wait())
    gone = asyncio.create_task(reader.read(1))
    done, pending = await asyncio.wait({released, gone}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if gone in done and not gone.result():
        return False
    return released in done


async def _respond(writer: asyncio.StreamWriter, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    reason = {202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests"}.get(
        status, "Error"
    )
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        "Connection: keep-alive\r\n\r\n".encode()
        + data
    )
    await writer.drain()


def _digits(to: str) -> str:
    return to.removeprefix("+")


def _name(action: Action) -> str:
    if isinstance(action, Fail):
        return f"fail:{action.status}"
    if isinstance(action, Refuse):
        return f"refuse:{action.code}"
    return action
