"""The async database engine and the sessions built from it.

One engine (and its pool of asyncpg connections) per process; one AsyncSession per request,
closed when the request ends. Every query is awaited: while PostgreSQL works, the event loop
serves other requests. A session closed without `commit()` rolls back, so a request that
fails half-way leaves nothing behind.
"""

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.config import Settings
from shared.settings import sqlalchemy_url


def make_engine(settings: Settings) -> AsyncEngine:
    """Return an async engine for DATABASE_URL with the asyncpg driver."""
    return create_async_engine(
        sqlalchemy_url(settings.database_url, "asyncpg"),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,  # a connection the server closed (restart) is replaced, not used
        echo=settings.db_echo,
    )


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: an expired attribute would need a lazy load, and lazy loads
    # are not allowed in async code (they would be hidden blocking I/O).
    return async_sessionmaker(engine, expire_on_commit=False)
