"""The database configuration: engine, sessions and Alembic, the same for app, CLI and tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from advanced_alchemy.extensions.litestar import (
    AlembicAsyncConfig,
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
)
from litestar.connection import ASGIConnection
from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.pool import ConnectionPoolEntry

from naboom.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _: ConnectionPoolEntry) -> None:
    # WAL lets the API read while the ingest writes; a busy timeout instead of instant "locked" errors.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def database_config(settings: Settings) -> SQLAlchemyAsyncConfig:
    """One config per process; the engine is created lazily and reused."""
    engine: dict[str, Any] = {}
    if settings.embedded_database:
        Path(settings.database_url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    else:
        engine = {"pool_size": 10, "max_overflow": 10, "pool_pre_ping": True}
    config = SQLAlchemyAsyncConfig(
        connection_string=settings.database_url,
        engine_config=EngineConfig(**engine),
        session_config=AsyncSessionConfig(expire_on_commit=False),
        before_send_handler="autocommit",
        alembic_config=AlembicAsyncConfig(
            script_location=str(MIGRATIONS),
            script_config=str(MIGRATIONS / "alembic.ini"),
            version_table_name="alembic_version",
        ),
        create_all=False,
    )
    if settings.embedded_database:
        event.listen(config.get_engine().sync_engine, "connect", _sqlite_pragmas)
    return config


@asynccontextmanager
async def connection_session(connection: ASGIConnection) -> AsyncIterator[AsyncSession]:
    """The session for what runs before a handler (authentication, guards) on this connection.

    For an HTTP request it is the request's own session, the one the handler gets as
    ``db_session``: one pooled connection and one transaction per request instead of two, which
    the plugin commits (2xx/3xx) or rolls back, and closes, as the response starts. A WebSocket
    lives for hours: its session is its own, closed here, so the socket holds no connection.
    """
    config: SQLAlchemyAsyncConfig = connection.app.state.db
    if connection.scope["type"] == "http":
        yield config.provide_session(connection.app.state, connection.scope)
        return
    async with config.get_session() as session:
        yield session


def upgrade(config: SQLAlchemyAsyncConfig) -> None:
    """Apply every migration (must run outside an event loop)."""
    from advanced_alchemy.alembic.commands import AlembicCommands

    AlembicCommands(sqlalchemy_config=config).upgrade("heads")
