"""Who is calling: signed, expiring tokens from a header, the session cookie or ``?token=``."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt
from litestar import Request, WebSocket
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from naboom.db.models import Role
from naboom.errors import AuthenticationError
from naboom.settings import Settings

SESSION_COOKIE = "naboom_session"
_ALGORITHM = "HS256"
# Browsers cannot set headers on EventSource or WebSocket: only these paths take ?token=.
QUERY_TOKEN_PATHS = ("/panic/api/stream", "/ws/")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user as the services see it."""

    id: uuid.UUID
    username: str
    role: str
    regions: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        """Admins see every region."""
        return self.role == Role.ADMIN

    def can_see(self, region: str) -> bool:
        """Whether this principal may see ``region``."""
        return self.is_admin or region in self.regions


AuthRequest = Request[Principal, str, State]
AuthSocket = WebSocket[Principal, str, State]


class TokenCodec:
    """Issues and checks HS256 tokens signed with ``NABOOM_SECRET_KEY``."""

    def __init__(self, settings: Settings) -> None:
        self._key = settings.secret_key
        self.ttl = settings.token_ttl_seconds

    def issue(self, principal: Principal) -> str:
        """A token for ``principal`` valid for the configured lifetime."""
        now = int(time.time())
        claims = {
            "sub": str(principal.id),
            "name": principal.username,
            "role": principal.role,
            "regions": list(principal.regions),
            "iat": now,
            "exp": now + self.ttl,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM)

    def read(self, token: str) -> Principal:
        """The principal of a valid token, or :class:`AuthenticationError`."""
        try:
            claims = jwt.decode(token, self._key, algorithms=[_ALGORITHM], options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("token expired; log in again") from None
        except jwt.PyJWTError:
            raise AuthenticationError("token is not valid") from None
        return Principal(
            id=uuid.UUID(claims["sub"]),
            username=claims["name"],
            role=claims["role"],
            regions=tuple(claims.get("regions", ())),
        )


def token_from(connection: ASGIConnection) -> str | None:
    """The caller's token: ``Authorization: Bearer``, the session cookie, or ``?token=`` on live feeds."""
    header = connection.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    if cookie := connection.cookies.get(SESSION_COOKIE):
        return cookie
    if connection.scope["path"].startswith(QUERY_TOKEN_PATHS):
        return connection.query_params.get("token")
    return None


class TokenAuthMiddleware(AbstractAuthenticationMiddleware):
    """Rejects every request without a valid token, except the excluded paths."""

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        """Resolve the principal or raise 401."""
        token = token_from(connection)
        if token is None:
            raise AuthenticationError("authentication required: send a Bearer token or log in")
        codec: TokenCodec = connection.app.state.tokens
        return AuthenticationResult(user=codec.read(token), auth=token)
