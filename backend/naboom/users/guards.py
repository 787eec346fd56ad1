"""Route guards by role."""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers import BaseRouteHandler

from naboom.errors import PermissionDeniedError
from naboom.users.auth import Principal


def admin_only(connection: ASGIConnection[object, Principal, str, State], _: BaseRouteHandler) -> None:
    """Only admins pass."""
    if not connection.user.is_admin:
        raise PermissionDeniedError("admins only")
