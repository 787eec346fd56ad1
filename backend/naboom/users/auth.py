"""Who is calling: a session token from ``Authorization: Bearer``, the session cookie or ``?token=``.

Tokens are HS256-signed and expire; each names a server-side session (its ``jti``) so logout
and expiry take effect at once, and so role and region changes apply to the next request.
A browser that authenticates with the cookie must echo its CSRF token on unsafe methods.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
from litestar import Request, WebSocket
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from sqlalchemy import bindparam, select

from naboom.db import models as m
from naboom.db.config import connection_session
from naboom.errors import AuthenticationError, PermissionDeniedError
from naboom.settings import Settings

SESSION_COOKIE = "naboom_session"
CSRF_COOKIE = "naboom_csrf"
CSRF_HEADER = "x-csrf-token"
_ALGORITHM = "HS256"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Browsers cannot set headers on EventSource or WebSocket: only these paths take ?token=.
QUERY_TOKEN_PATHS = ("/panic/api/stream", "/ws/")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user as the services see it."""

    id: uuid.UUID
    username: str
    role: str
    regions: tuple[str, ...]
    session_id: uuid.UUID | None = None
    ip: str | None = None

    @property
    def is_admin(self) -> bool:
        """Admins see and do everything."""
        return self.role == m.Role.ADMIN

    @property
    def can_act(self) -> bool:
        """Operators and admins change things; viewers only read."""
        return self.role in (m.Role.ADMIN, m.Role.OPERATOR)

    def can_see(self, region: str) -> bool:
        """Whether this principal may see ``region``."""
        return self.is_admin or region in self.regions

    def require_act(self) -> None:
        """Refuse viewers."""
        if not self.can_act:
            raise PermissionDeniedError("viewers can only read")

    def require_admin(self) -> None:
        """Refuse everyone but admins."""
        if not self.is_admin:
            raise PermissionDeniedError("admins only")


AuthRequest = Request[Principal, str, State]
AuthSocket = WebSocket[Principal, str, State]


def digest(value: str) -> str:
    """SHA-256 hex of a secret that is stored only hashed."""
    return hashlib.sha256(value.encode()).hexdigest()


class TokenCodec:
    """Issues and checks HS256 tokens signed with ``NABOOM_SECRET_KEY``."""

    def __init__(self, settings: Settings) -> None:
        self._key = settings.secret_key
        self.ttl = settings.token_ttl_seconds

    def issue(self, user_id: uuid.UUID, session_id: uuid.UUID, expires_at: datetime) -> str:
        """A token for one session."""
        claims = {"sub": str(user_id), "jti": str(session_id), "iat": int(time.time()), "exp": int(expires_at.timestamp())}
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM)

    def read(self, token: str) -> tuple[uuid.UUID, uuid.UUID]:
        """``(user id, session id)`` of a valid, unexpired token, or :class:`AuthenticationError`."""
        try:
            claims = jwt.decode(token, self._key, algorithms=[_ALGORITHM], options={"require": ["exp", "sub", "jti"]})
            return uuid.UUID(claims["sub"]), uuid.UUID(claims["jti"])
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("token expired; log in again") from None
        except (jwt.PyJWTError, ValueError):
            raise AuthenticationError("token is not valid") from None


def token_from(connection: ASGIConnection) -> tuple[str | None, bool]:
    """The caller's token and whether it came from the session cookie."""
    header = connection.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None, False
    if cookie := connection.cookies.get(SESSION_COOKIE):
        return cookie, True
    if connection.scope["path"].startswith(QUERY_TOKEN_PATHS):
        return connection.query_params.get("token"), False
    return None, False


def client_ip(connection: ASGIConnection) -> str | None:
    """The client's address (uvicorn already resolved X-Forwarded-For from trusted proxies)."""
    return connection.client.host if connection.client else None

# Columns, not ORM objects: this runs on every request, and the identity map it would fill is
# the handler's (the request's session is shared, see connection_session).
_SESSION_OF = (
    select(
        m.AuthSession.revoked_at,
        m.AuthSession.expires_at,
        m.AuthSession.csrf_hash,
        m.Operator.id.label("user_id"),
        m.Operator.username,
        m.Operator.role,
        m.Operator.regions,
        m.Operator.active,
    )
    .join(m.Operator, m.Operator.id == m.AuthSession.operator_id)
    .where(m.AuthSession.id == bindparam("session_id"), m.Operator.id == bindparam("user_id"))
)


class TokenAuthMiddleware(AbstractAuthenticationMiddleware):
    """Rejects every request without a live session, except the excluded paths."""

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        """Resolve the principal or raise 401 (403 for a missing CSRF token)."""
        token, from_cookie = token_from(connection)
        if token is None:
            raise AuthenticationError("authentication required: send a Bearer token or log in")
        state = connection.app.state
        user_id, session_id = state.tokens.read(token)
        async with connection_session(connection) as db:
            row = (await db.execute(_SESSION_OF, {"session_id": session_id, "user_id": user_id})).one_or_none()
        if row is None:
            raise AuthenticationError("session not found; log in again")
        if row.revoked_at is not None:
            raise AuthenticationError("session ended (logged out); log in again")
        if row.expires_at <= datetime.now(UTC):
            raise AuthenticationError("session expired; log in again")
        if not row.active:
            raise AuthenticationError("account disabled")
        method = connection.scope.get("method", "GET")
        if from_cookie and method not in _SAFE_METHODS:
            sent = connection.headers.get(CSRF_HEADER, "")
            if not sent or not hmac.compare_digest(digest(sent), row.csrf_hash):
                raise PermissionDeniedError(f"missing or wrong {CSRF_HEADER} header for a cookie-authenticated request")
        principal = Principal(
            id=row.user_id,
            username=row.username,
            role=row.role,
            regions=tuple(row.regions),
            session_id=session_id,
            ip=client_ip(connection),
        )
        return AuthenticationResult(user=principal, auth=token)
