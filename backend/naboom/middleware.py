"""HTTP middleware of our own, where Litestar's does not fit."""

from __future__ import annotations

from litestar.datastructures import Headers
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp, Receive, Scope, Send, WebSocketCloseEvent

_INVALID_HOST = (
    b'{"status":400,"title":"Bad Request","detail":"the Host header names a host this server does not serve; '
    b'see NABOOM_ALLOWED_HOSTS"}'
)


class AllowedHostsMiddleware:
    """Refuse requests for hosts not in ``NABOOM_ALLOWED_HOSTS`` (``*.example.org`` allowed).

    Litestar's own check compares the Host header with its port, so ``localhost:8000`` never
    matches ``localhost``; this one compares the host name alone. It wraps the whole ASGI app,
    in front of routing, so a foreign Host learns nothing, not even which paths exist.
    """

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...]) -> None:
        self.app = app
        self.any = "*" in allowed
        self.exact = {h.lower() for h in allowed if not h.startswith("*.")}
        self.suffixes = tuple(h[1:].lower() for h in allowed if h.startswith("*."))

    def allows(self, host_header: str) -> bool:
        """Whether the host name (port removed, IPv6 brackets kept) is served here."""
        host = host_header.lower()
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 or (host.startswith("[") and "]:" in host) else host
        return host in self.exact or (bool(self.suffixes) and host.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass allowed hosts through; answer 400 problem details otherwise."""
        if scope["type"] not in ("http", "websocket") or self.any or self.allows(Headers.from_scope(scope).get("host", "")):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send(WebSocketCloseEvent(type="websocket.close", code=1008, reason="host not allowed"))
            return
        response = ASGIResponse(body=_INVALID_HOST, status_code=400, media_type="application/problem+json")
        await response(scope, receive, send)
