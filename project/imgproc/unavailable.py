"""Which errors mean "a backing service cannot serve right now": 503 + Retry-After, not 500.

The API meets PostgreSQL through SQLAlchemy + asyncpg, the cache and the broker through
redis-py/kombu, and the data directory through the OS. Each reports an outage in its own way:

- SQLAlchemy: `OperationalError`, `InterfaceError`, the pool's `TimeoutError`, and a plain
  `DBAPIError` wrapping an asyncpg error whose SQLSTATE says the server cannot serve now
  (class 08 connection exception, 53 insufficient resources, 57 operator intervention: "the
  database system is shutting down / starting up", 58 system error, 40 a rollback to retry);
  any error marked `connection_invalidated`;
- asyncpg and psycopg errors that escape unwrapped (connection lost, cannot connect now, a
  connection left mid-protocol by a server that is shutting down);
- redis-py's connection and timeout errors;
- `OSError` (a refused connection, a full or read-only disk) and `TimeoutError`.

Anything else (a bug, a constraint the code should have prevented) stays a 500.
"""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]  # (no stubs; only its exception classes)
import psycopg
import redis
from sqlalchemy import exc as sa

RETRYABLE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})

_ALWAYS = (
    sa.OperationalError,
    sa.InterfaceError,
    sa.TimeoutError,  # no pooled connection became free in time
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    # "cannot switch to state ...; another operation is in progress": a server shutting down
    # sends its FATAL (57P01) to every idle connection before it closes them, and a request
    # that starts on one in between finds the protocol still consuming that error.
    asyncpg.InternalClientError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    redis.ConnectionError,
    redis.TimeoutError,
    OSError,
    TimeoutError,
)


# The roots of everything above: the API routes these to `answer_unavailable` (main.py), which
# answers 503 for the ones `is_unavailable` recognises and 500 for the rest.
ROOTS: tuple[type[Exception], ...] = (
    sa.DBAPIError,
    sa.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    psycopg.Error,
    redis.RedisError,
    OSError,
    TimeoutError,
)


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error, wrapped or not."""
    for candidate in (exc, getattr(exc, "orig", None), getattr(exc, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str) and len(code) == 5:
            return code
    return None


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` says a backing service is down, restarting, overloaded or full."""
    if isinstance(exc, _ALWAYS):
        return True
    if isinstance(exc, sa.DBAPIError):
        if exc.connection_invalidated:
            return True
        if isinstance(exc.orig, _ALWAYS):
            return True
    code = sqlstate_of(exc)
    return code is not None and code[:2] in RETRYABLE_SQLSTATE_CLASSES
