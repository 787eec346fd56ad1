"""``/api/auth``: log in, log out, who am I."""

from __future__ import annotations

from datetime import timedelta

from litestar import Controller, Request, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.response import Response
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.audit.service import record
from naboom.errors import AuthenticationError
from naboom.openapi import problems
from naboom.users.auth import CSRF_COOKIE, SESSION_COOKIE, AuthRequest, TokenCodec, client_ip
from naboom.users.schemas import LoginRequest, LoginResponse, Me
from naboom.users.service import OperatorService
from naboom.users.throttle import LoginThrottle


def _cookies(request: Request, token: str, csrf: str, max_age: int) -> list[Cookie]:
    secure = request.url.scheme == "https"
    return [
        Cookie(key=SESSION_COOKIE, value=token, max_age=max_age, httponly=True, samesite="strict", secure=secure, path="/"),
        # Readable by the monitor's script, which echoes it in the X-CSRF-Token header.
        Cookie(key=CSRF_COOKIE, value=csrf, max_age=max_age, httponly=False, samesite="strict", secure=secure, path="/"),
    ]


class AuthController(Controller):
    """Sessions for the browser (cookie + CSRF token) and scripts (Bearer)."""

    path = "/api/auth"
    tags = ["auth"]

    @post(
        "/login",
        status_code=200,
        exclude_from_auth=True,
        responses=problems(
            401, 429, why={401: "Wrong username or password, or the account is disabled",
                           429: "Too many failed logins for this username from this address: wait `Retry-After` seconds"}
        ),
    )
    async def login(
        self, request: Request, db_session: NamedDependency[AsyncSession], data: JSONBody[LoginRequest]
    ) -> Response[LoginResponse]:
        """Exchange credentials for a session: a Bearer token and HttpOnly cookie, plus a CSRF token."""
        state = request.app.state
        ip = client_ip(request)
        throttle = LoginThrottle(
            request.app.stores.get("login-throttle"),
            state.settings.login_max_failures,
            state.settings.login_lockout_seconds,
        )
        await throttle.check(data.username, ip)
        users = OperatorService(session=db_session)
        try:
            user = await users.authenticate(data.username, data.password)
        except AuthenticationError:
            await throttle.failed(data.username, ip)
            raise
        await throttle.succeeded(data.username, ip)
        codec: TokenCodec = state.tokens
        session, csrf = await users.open_session(
            user, timedelta(seconds=codec.ttl), ip, request.headers.get("user-agent")
        )
        record(db_session, None, "auth.login", "operator", user.id, {"ip": ip}, actor_name=user.username)
        token = codec.issue(user.id, session.id, session.expires_at)
        body = LoginResponse(
            token=token,
            csrf_token=csrf,
            expires_in=codec.ttl,
            expires_at=session.expires_at,
            username=user.username,
            role=user.role,
            regions=list(user.regions),
        )
        return Response(body, cookies=_cookies(request, token, csrf, codec.ttl))

    @post("/logout", status_code=200)
    async def logout(self, request: AuthRequest, db_session: NamedDependency[AsyncSession]) -> Response[dict[str, str]]:
        """End this session; its token and cookie stop working at once."""
        if request.user.session_id is not None:
            await OperatorService(session=db_session).close_session(request.user.session_id)
        record(db_session, request.user, "auth.logout", "operator", request.user.id)
        expired = [Cookie(key=name, value="", max_age=0, path="/") for name in (SESSION_COOKIE, CSRF_COOKIE)]
        return Response({"status": "logged out"}, cookies=expired)

    @get("/me")
    async def me(self, request: AuthRequest) -> Me:
        """The logged-in user."""
        user = request.user
        return Me(id=user.id, username=user.username, role=user.role, regions=list(user.regions))
