"""The database engine and the sessions built from it.

One engine (and its connection pool) per process; one session per request, closed when the
request ends. A session that is closed without `commit()` rolls back, so a request that fails
half-way leaves nothing behind in the database.
"""

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from shared.settings import sqlalchemy_url


def make_engine(settings: Settings) -> Engine:
    """Return an engine for DATABASE_URL with the sync psycopg 3 driver."""
    return create_engine(
        sqlalchemy_url(settings.database_url, "psycopg"),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,  # a connection the server closed (restart) is replaced, not used
        echo=settings.db_echo,
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: rows stay readable after commit without another SELECT.
    return sessionmaker(engine, expire_on_commit=False)
