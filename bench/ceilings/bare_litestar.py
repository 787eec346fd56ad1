#!/usr/bin/env python
"""The API's third ceiling: the framework's own floor, an empty Litestar app on the two routes.

Exactly two routes and nothing else: no middleware, no auth, no database, no OpenAPI schema.
``GET /api/incidents`` answers ``200 {"ok":true}``; ``POST /panic/api/vehicle/ping`` takes the
body as ``data: dict[str, Any]`` (so Litestar reads and parses the JSON, as it does for the real
endpoint) and answers ``202 {"ok":true}``. It is served by uvicorn with the options of
``bare_asgi.py`` (one process; proxy headers on; the access log below its level), so
naboom's ratio to it is what naboom's auth, validation, database work and code cost on top of an
empty Litestar handler, and its own ratio to ``bare_asgi.py`` is how much of the target the
framework alone takes.

    .venv/bin/python bench/ceilings/bare_litestar.py --port 8003
"""

from __future__ import annotations

import argparse
from typing import Any

from litestar import Litestar, get, post


@get("/api/incidents")
async def incidents() -> dict[str, Any]:
    """A constant small JSON object."""
    return {"ok": True}


@post("/panic/api/vehicle/ping", status_code=202)
async def ping(data: dict[str, Any]) -> dict[str, Any]:
    """The JSON body parsed, then a constant small JSON object."""
    return {"ok": True}


app = Litestar(route_handlers=[incidents, ping], openapi_config=None)


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
