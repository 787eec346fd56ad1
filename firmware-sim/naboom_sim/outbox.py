"""The device's on-disk outbox: an SOS is stored before it is sent and removed only once acknowledged.

Each entry is one file written atomically (temporary file, fsync, rename, fsync of the
directory), so a crash or power cut leaves either the whole signed payload or nothing. File
names start with a nanosecond sequence, so the outbox delivers oldest first; the payload is
stored signed, so a retry sends the original ``ts`` and nonce, never a re-signed copy.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUFFIX = ".json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def default_outbox_root() -> Path:
    """``~/.naboom-sim/outbox``: one folder per device below it."""
    return Path.home() / ".naboom-sim" / "outbox"


@dataclass(frozen=True)
class Entry:
    """One queued SOS: the signed payload exactly as it will be published."""

    path: Path
    payload: dict[str, Any]
    queued_at: float

    @property
    def nonce(self) -> str | int:
        return self.payload["nonce"]  # type: ignore[no-any-return]


class Outbox:
    """The pending SOS of one device, in ``root/<pid>/``."""

    def __init__(self, root: Path, pid: str) -> None:
        self.dir = root / _UNSAFE.sub("_", pid)
        self._last_seq = 0

    def add(self, payload: dict[str, Any]) -> Entry:
        """Store a signed payload durably; returns its entry."""
        self.dir.mkdir(parents=True, exist_ok=True)
        # Strictly increasing within a process even if the clock stands still or steps back.
        seq = max(time.time_ns(), self._last_seq + 1)
        self._last_seq = seq
        queued_at = time.time()
        name = f"{seq:020d}-{_UNSAFE.sub('_', str(payload['nonce']))[:64]}{SUFFIX}"
        body = json.dumps({"queued_at": queued_at, "payload": payload}).encode()
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.dir / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._sync_dir()
        return Entry(self.dir / name, payload, queued_at)

    def entries(self) -> list[Entry]:
        """Every pending entry, oldest first (temporary files of an interrupted write are ignored)."""
        if not self.dir.is_dir():
            return []
        found = []
        for path in sorted(self.dir.glob(f"*{SUFFIX}")):
            if path.name.startswith("."):
                continue
            try:
                data = json.loads(path.read_bytes())
            except FileNotFoundError:
                continue  # delivered by a concurrent run meanwhile
            found.append(Entry(path, data["payload"], float(data["queued_at"])))
        return found

    def remove(self, entry: Entry) -> None:
        """Forget an acknowledged entry (already gone is fine: another run delivered it)."""
        entry.path.unlink(missing_ok=True)
        self._sync_dir()

    def try_lock(self) -> int | None:
        """Become the one sender of this outbox (an exclusive ``flock``); the fd to :meth:`unlock`, or ``None``.

        One device has one connection (its client id is its pid): two senders would take the
        session from each other in turns, so a second run waits for the first instead.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def unlock(self, fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __len__(self) -> int:
        return len(self.entries())

    def _sync_dir(self) -> None:
        # The rename or unlink is durable only once the directory itself is synced.
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
