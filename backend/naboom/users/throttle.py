"""Failed logins are throttled per username and client address."""

from __future__ import annotations

from litestar.stores.base import Store

from naboom.errors import TooManyRequestsError


class LoginThrottle:
    """After ``max_failures`` failures, refuse that username from that address until the window ends."""

    def __init__(self, store: Store, max_failures: int, window_seconds: int) -> None:
        self._store = store
        self._max = max_failures
        self._window = window_seconds

    @staticmethod
    def _key(username: str, ip: str | None) -> str:
        return f"{username.lower()}|{ip or '-'}"

    async def check(self, username: str, ip: str | None) -> None:
        """Raise 429 while locked out."""
        key = self._key(username, ip)
        count = int(await self._store.get(key) or 0)
        if count >= self._max:
            retry = await self._store.expires_in(key) or self._window
            raise TooManyRequestsError(f"too many failed logins; try again in {retry} s", retry_after=retry)

    async def failed(self, username: str, ip: str | None) -> None:
        """Count one failure; the window starts at the first."""
        key = self._key(username, ip)
        count = int(await self._store.get(key) or 0) + 1
        remaining = await self._store.expires_in(key) if count > 1 else None
        await self._store.set(key, str(count), expires_in=remaining or self._window)

    async def succeeded(self, username: str, ip: str | None) -> None:
        """A correct login clears the count."""
        await self._store.delete(self._key(username, ip))
