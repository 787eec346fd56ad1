"""``/api/users``: admins manage control-room users."""

from __future__ import annotations

from litestar import Controller

from naboom.users.guards import admin_only


class UserAdminController(Controller):
    """Users, roles and regions (admins only)."""

    path = "/api/users"
    tags = ["users"]
    guards = [admin_only]
