"""Alembic's entry point: connect to DATABASE_URL and run the migrations.

`target_metadata` is the models' MetaData, so `alembic revision --autogenerate` compares the
models with the database and names constraints by the same naming convention.
"""

from alembic import context
from sqlalchemy import create_engine, pool

from app.config import get_settings
from app.models import Base
from shared.settings import sqlalchemy_url

target_metadata = Base.metadata


def database_url() -> str:
    return sqlalchemy_url(get_settings().database_url, "psycopg")


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL instead of running it."""
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
