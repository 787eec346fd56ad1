"""Core inserts shared by the services that write in bulk or must not insert twice."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def table_of(model: type[Any]) -> Table:
    """A model's table, for Core inserts that skip the ORM's per-row bookkeeping."""
    return cast(Table, model.__table__)


def insert_ignore(session: AsyncSession, table: Table) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING`` in the session's dialect (PostgreSQL or SQLite)."""
    dialect = session.get_bind().dialect.name
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    return stmt.on_conflict_do_nothing()


async def asyncpg_connection(session: AsyncSession) -> Any | None:
    """The asyncpg connection under the session's open transaction, for bulk statements; else ``None``.

    SQLAlchemy renders a multi-row insert with a bind parameter per value, converted one by one
    in Python, and a new statement text for every row count (prepared anew by PostgreSQL). One
    ``INSERT … SELECT FROM unnest($1::type[], …)`` has a fixed text, prepared once, and asyncpg
    encodes whole columns. ``None`` on SQLite, and on a connection that is not in a transaction
    (autocommit): a statement on the raw connection would then commit on its own.

    SQLAlchemy's asyncpg adapter sends BEGIN only with the first statement of a transaction;
    when the bulk statement is that first one, the adapter's BEGIN is sent here, as SQLAlchemy's
    own first statement would.
    """
    if session.get_bind().dialect.driver != "asyncpg":
        return None
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if driver is None:
        return None
    adapter = raw.dbapi_connection
    if not driver.is_in_transaction() and adapter is not None and not adapter._started:  # noqa: SLF001
        await adapter._start_transaction()  # noqa: SLF001
    return driver if driver.is_in_transaction() else None
