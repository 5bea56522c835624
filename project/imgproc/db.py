"""SQLAlchemy base with an explicit naming convention, and engine factories.

The API uses an async engine (asyncpg); the worker and the reconciler use a sync engine
(psycopg), created lazily in each worker process so that no connection crosses a fork.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry, Pool

from shared.settings import plain_postgres_url, sqlalchemy_url

# Session settings of every worker connection. synchronous_commit=off: see make_sync_engine.
_WORKER_OPTIONS = "-c synchronous_commit=off"

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# A pooled API connection idle longer than this is pinged before use (see _ping_when_idle).
PING_AFTER_IDLE_SECONDS = 2.0


def make_async_engine(
    database_url: str, *, pool_size: int = 20, ping_after_idle: float = PING_AFTER_IDLE_SECONDS
) -> AsyncEngine:
    """The API's engine: up to `pool_size` connections, each opened when first needed and kept.

    No overflow: SQLAlchemy closes an overflow connection as soon as it is returned and a busy
    second opens a new one, so a load that hovers around the pool's size paid a connection
    (TLS negotiation, authentication and a forked PostgreSQL backend) every few requests.
    """
    engine = create_async_engine(
        sqlalchemy_url(database_url, "asyncpg"),
        pool_size=pool_size,
        max_overflow=0,
    )
    _ping_when_idle(engine.sync_engine.pool, ping_after_idle)
    return engine


def _ping_when_idle(pool: Pool, idle_seconds: float) -> None:
    """Ping a pooled connection before use only if it sat idle for `idle_seconds`.

    SQLAlchemy's `pool_pre_ping` pings at every checkout, and its asyncpg ping is three round
    trips (BEGIN, an empty statement, ROLLBACK): more than the upload's own INSERT transaction.
    A connection in steady use does not need it; one that sat idle may have been closed by a
    database restart or an idle timeout. A failed ping replaces every pooled connection, as
    pre-ping does; a connection that dies while in use is found by its failing statement
    (a 503, and SQLAlchemy replaces the pool the same way).
    """

    @event.listens_for(pool, "checkin")
    def _checked_in(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checked_out(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:
            raise InvalidatePoolError(f"ping of an idle connection failed: {exc}") from exc


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def make_sync_engine(database_url: str, *, pool_size: int = 2) -> Engine:
    """The worker's engine, with `synchronous_commit = off`.

    Safe here, and only here: a worker commit lost in a database crash is a claim (the job goes
    back to `queued` and the reconciler re-sends it) or a `done` (the job runs again and writes
    the same content-addressed output). The API's INSERT stays synchronous: its 202 is a promise.
    """
    return create_engine(
        sqlalchemy_url(database_url, "psycopg"),
        pool_size=pool_size,
        max_overflow=0,
        # This engine runs only the rare statements (a failure, a retry, the reconciler), the
        # ones that must work right after a database restart: a ping per checkout replaces a
        # connection the restart killed instead of failing the statement.
        pool_pre_ping=True,
        connect_args={"options": _WORKER_OPTIONS},
        # Every worker transaction is one statement: autocommit saves the BEGIN and COMMIT
        # round trips around it.
        isolation_level="AUTOCOMMIT",
    )


class DriverConnection:
    """One plain psycopg connection for the worker's per-job statements (claim and done).

    Autocommit (each statement is its own transaction), prepared statements, rows as dicts.
    After a connection error the connection is dropped and the next call opens a new one; the
    error itself reaches the caller, which treats it as transient.
    """

    DISCONNECTED = (psycopg.OperationalError, psycopg.InterfaceError)

    def __init__(self, database_url: str, *, connect_timeout: int = 5) -> None:
        self._url = plain_postgres_url(database_url)
        self._connect_timeout = connect_timeout
        self._conn: psycopg.Connection[dict[str, Any]] | None = None

    def fetch_one(self, sql: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._conn = psycopg.connect(
                self._url,
                autocommit=True,
                options=_WORKER_OPTIONS,
                connect_timeout=self._connect_timeout,
                row_factory=dict_row,
            )
        try:
            return conn.execute(sql, params, prepare=True).fetchone()
        except self.DISCONNECTED:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
