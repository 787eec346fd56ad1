"""The built monitor on disk: files read once per version, kept in memory with their gzip."""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# Vite puts every hashed (content-named) file here: a name never changes content.
ASSETS_DIR = "assets"
INDEX = "index.html"
# Smaller bodies gain nothing from gzip; binary formats (images, fonts) are compressed already.
GZIP_MIN_BYTES = 512
COMPRESSIBLE = {
    ".css", ".geojson", ".html", ".js", ".json", ".map", ".mjs", ".svg", ".topojson", ".txt", ".webmanifest", ".xml",
}
MEDIA_TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".webmanifest": "application/manifest+json"}
MAX_CACHED = 512


@dataclass(frozen=True, slots=True)
class Asset:
    """One file's bytes (and gzip of them, when worth it) with its type and entity tag."""

    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str
    immutable: bool


class MonitorFiles:
    """The files of one build directory, looked up by their path under ``/monitor/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[Path, tuple[tuple[int, int], Asset]] = {}

    @property
    def built(self) -> bool:
        """Whether the directory holds a build (its ``index.html``)."""
        return (self.root / INDEX).is_file()

    def index(self) -> Asset | None:
        """``index.html``, or None when there is no build."""
        return self.get(INDEX)

    def get(self, relative: str) -> Asset | None:
        """The file at ``relative`` (a URL path under the root), or None if there is none.

        Paths with ``..``, hidden parts or anything resolving outside the root are never files here.
        """
        parts = PurePosixPath(relative).parts
        if not parts or any(p in ("..", "/") or p.startswith(".") or "\\" in p for p in parts):
            return None
        root = self.root.resolve()
        path = root.joinpath(*parts).resolve()
        if not path.is_relative_to(root):
            return None
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file():
            return None
        version = (stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == version:
            return cached[1]
        asset = self._load(path, immutable=parts[0] == ASSETS_DIR and len(parts) > 1)
        if len(self._cache) >= MAX_CACHED:
            # Old builds' names pile up while a dev server runs across rebuilds.
            self._cache.clear()
        self._cache[path] = (version, asset)
        return asset

    @staticmethod
    def _load(path: Path, *, immutable: bool) -> Asset:
        body = path.read_bytes()
        suffix = path.suffix.lower()
        media_type = MEDIA_TYPES.get(suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        gzipped = None
        if suffix in COMPRESSIBLE and len(body) >= GZIP_MIN_BYTES:
            # mtime=0: the same file gives the same bytes (and entity tag) in every process.
            gzipped = gzip.compress(body, compresslevel=9, mtime=0)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        return Asset(body=body, gzipped=gzipped, media_type=media_type, etag=etag, immutable=immutable)
