"""The one error hierarchy; ``app.py`` maps it to RFC 9457 problem details in one place."""

from __future__ import annotations

from typing import Any


class NaboomError(Exception):
    """Base of every error the product raises on purpose."""

    status_code = 400
    title = "Bad request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers
        self.extra = extra


class NotFoundError(NaboomError):
    """The thing does not exist, or the caller may not know that it does."""

    status_code = 404
    title = "Not found"


class ConflictError(NaboomError):
    """The request clashes with the current state."""

    status_code = 409
    title = "Conflict"


class AuthenticationError(NaboomError):
    """Missing or wrong credentials."""

    status_code = 401
    title = "Unauthorized"


class PermissionDeniedError(NaboomError):
    """Authenticated, but not allowed."""

    status_code = 403
    title = "Forbidden"


class UnavailableError(NaboomError):
    """This server cannot do that now (a feature not configured, a dependency down)."""

    status_code = 503
    title = "Service Unavailable"


class TooManyRequestsError(NaboomError):
    """Slow down; ``Retry-After`` says for how long."""

    status_code = 429
    title = "Too Many Requests"

    def __init__(self, detail: str, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))}, retry_after=max(1, retry_after), **extra)
