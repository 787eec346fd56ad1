#!/usr/bin/env python
"""The API ceiling: a bare ASGI app answering every request with a small JSON body.

It reads the request body (a ping's POST costs the same bytes to receive) and answers
``200 {"ok":true}``; no routing, no middleware, no framework. It is served by uvicorn with the
options ``naboom serve`` uses (uvicorn picks uvloop and httptools the same way for both; one
process; proxy headers on; the access log on, as ``naboom serve`` has it, below its level), so the benchmark's ratio is what the framework, the
auth and the database cost on top of the server itself.

    .venv/bin/python bench/ceilings/bare_asgi.py --port 8001
"""

from __future__ import annotations

import argparse
from typing import Any

BODY = b'{"ok":true}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer every HTTP request with :data:`BODY`; take part in the lifespan protocol."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        proxy_headers=True,
        forwarded_allow_ips=["127.0.0.1", "::1"],
        timeout_graceful_shutdown=3,
    )


if __name__ == "__main__":
    main()
