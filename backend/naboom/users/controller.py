"""``/api/auth``: logging in."""

from __future__ import annotations

from litestar import Controller, Request, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.response import Response
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.users.auth import SESSION_COOKIE, TokenCodec
from naboom.users.schemas import LoginRequest, LoginResponse
from naboom.users.service import OperatorService


class AuthController(Controller):
    """Login for the browser (cookie) and scripts (Bearer)."""

    path = "/api/auth"
    tags = ["auth"]

    @post("/login", status_code=200)
    async def login(
        self, request: Request, db_session: NamedDependency[AsyncSession], data: JSONBody[LoginRequest]
    ) -> Response[LoginResponse]:
        """Exchange credentials for a token and a session cookie."""
        principal = await OperatorService(session=db_session).authenticate(data.username, data.password)
        codec: TokenCodec = request.app.state.tokens
        token = codec.issue(principal)
        body = LoginResponse(
            token=token,
            expires_in=codec.ttl,
            username=principal.username,
            role=principal.role,
            regions=list(principal.regions),
        )
        cookie = Cookie(
            key=SESSION_COOKIE,
            value=token,
            max_age=codec.ttl,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return Response(body, cookies=[cookie])
