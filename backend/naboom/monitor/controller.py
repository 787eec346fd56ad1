"""``/monitor/``: the single-page app's files; every other path under it answers ``index.html``."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import anyio
from litestar import Request, Response, get
from litestar.params import FromPath
from litestar.response import Redirect

from naboom.errors import NotFoundError, UnavailableError
from naboom.monitor.files import ASSETS_DIR, Asset, MonitorFiles
from naboom.settings import Settings

PREFIX = "/monitor/"
# Hashed names never change content; everything else (index.html above all) is revalidated each time,
# so a new build reaches every screen on its next load.
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


@cache
def _files(root: Path) -> MonitorFiles:
    return MonitorFiles(root)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether ``Accept-Encoding`` allows gzip (``q=0`` refuses it)."""
    for part in accept_encoding.split(","):
        coding, *params = (p.strip() for p in part.split(";"))
        if coding.lower() not in ("gzip", "x-gzip", "*"):
            continue
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


def _respond(request: Request, asset: Asset) -> Response[bytes]:
    gzipped = asset.gzipped is not None and accepts_gzip(request.headers.get("accept-encoding", ""))
    etag = asset.etag[:-1] + '-gz"' if gzipped else asset.etag
    headers = {
        "Cache-Control": IMMUTABLE if asset.immutable else REVALIDATE,
        "ETag": etag,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if etag in (tag.strip() for tag in request.headers.get("if-none-match", "").split(",")):
        return Response(b"", status_code=304, headers=headers)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    body = asset.gzipped if gzipped and asset.gzipped is not None else asset.body
    return Response(body, media_type=asset.media_type, headers=headers)


def _find(files: MonitorFiles, relative: str) -> Asset:
    """The file at ``relative``, else ``index.html`` for the app's own routes."""
    asset = files.get(relative) if relative else None
    if asset is not None:
        return asset
    if relative.split("/", 1)[0] == ASSETS_DIR:
        # A missing script must fail as one, not arrive as HTML (a tab older than the deployed build).
        raise NotFoundError(f"no such file in this build of the monitor: {relative}")
    if not files.built:
        raise UnavailableError(
            "the monitor is not built: run `npm ci && npm run build` in frontend/ (scripts/dev does it), "
            "or point NABOOM_MONITOR_DIR at a build"
        )
    index = files.index()
    if index is None:
        raise UnavailableError("the monitor's index.html vanished while its build is being replaced; reload")
    return index


@get(["/monitor", "/monitor/{path:path}"], include_in_schema=False, exclude_from_auth=True)
async def monitor(request: Request, path: FromPath[str | None] = None) -> Response[bytes] | Redirect:
    """A file of the build, or ``index.html`` for the app's own routes (the router runs in the browser)."""
    if request.scope.get("raw_path") == PREFIX.rstrip("/").encode():
        # Routing ignores the trailing slash; the address bar should not (one URL per screen).
        query = request.scope.get("query_string", b"").decode("latin-1")
        return Redirect(PREFIX + (f"?{query}" if query else ""), status_code=301)
    settings: Settings = request.app.state.settings
    # In a worker thread: the first request for a file reads and gzips it.
    asset = await anyio.to_thread.run_sync(_find, _files(settings.monitor_dir), (path or "").lstrip("/"))
    return _respond(request, asset)


@get("/", include_in_schema=False, exclude_from_auth=True, status_code=302)
async def root() -> Redirect:
    """The monitor is the product's front page."""
    return Redirect(PREFIX, status_code=302)
